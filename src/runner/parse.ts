/**
 * Reading decoded JSON into the seed 000 types of ./types.ts the way serde deserializes them:
 * absent `#[serde(default)]` fields take their defaults (`config` and `metadata` → `null`,
 * `default_manifest` → `{entries: [], mounts: []}`, a mount's `intent` →
 * `{kind: "provider_native", uri: ""}`, `args`/`env` → `[]`, `recursive`/`artifact_export` →
 * `false`, ...), absent or `null` `Option` fields become `null` (`credentials`: left out),
 * `null` where the type is not an `Option` or a JSON value is refused, integers are range-checked
 * as their Rust types (`u8`, `u16`, `i32`), and `env` entries must be pairs of strings.
 *
 * Unknown fields: the request bodies (destination, session state, command, file read and write,
 * port and artifact requests, and what they contain) refuse them, as the JSON Schemas of
 * ./schemas.ts do; the other types ignore them, as serde does. The result is always a fresh
 * object with its fields in the seed's declaration order, so `JSON.stringify` writes exactly
 * what `serde_json::to_string` writes.
 *
 * Every `parse*` throws SandboxError `INVALID_REQUEST` with a message naming the field, e.g.
 * `RunnerCommandRequest.env[0] must be an array of two strings, not a string.`
 *
 * @module
 */
import {
  describeJson,
  fieldOf,
  invalid,
  type JsonFields,
  optionalString,
  readArray,
  readBoolean,
  readInteger,
  readJsonValue,
  readObject,
  requiredString,
} from "./json-read.ts";
import {
  DEFAULT_RUNNER_MOUNT_CAPABILITIES,
  RUNNER_MOUNT_KINDS,
  type RunnerArtifactExportRequest,
  type RunnerArtifactExportResult,
  type RunnerCapabilities,
  type RunnerCommandRequest,
  type RunnerCommandResult,
  type RunnerDestination,
  type RunnerFileReadRequest,
  type RunnerFileReadResult,
  type RunnerFileWriteRequest,
  type RunnerManifest,
  type RunnerManifestEntry,
  type RunnerMount,
  type RunnerMountCapabilities,
  type RunnerMountIntent,
  type RunnerMountKind,
  type RunnerPortRequest,
  type RunnerPortResult,
  type RunnerSecretRef,
  type RunnerSessionState,
  type RunnerSnapshotRef,
  type ThreadRunnerBinding,
} from "./types.ts";

/** How a `parse*` function reads its input. */
export interface RunnerParseOptions {
  /** Name of the value in messages; default the type's name (`"RunnerDestination"`). */
  path?: string;
  /**
   * Whether fields the type does not have are refused (`true`, the default for request bodies)
   * or ignored as serde does (`false`, the default for the other types).
   */
  refuseUnknownFields?: boolean;
}

/** Internal: where we are and whether unknown fields are refused. */
interface Context {
  path: string;
  strict: boolean;
}

const I32_MIN = -2_147_483_648;
const I32_MAX = 2_147_483_647;

function contextOf(options: RunnerParseOptions, name: string, strictByDefault: boolean): Context {
  return { path: options.path ?? name, strict: options.refuseUnknownFields ?? strictByDefault };
}

function objectIn(json: unknown, ctx: Context, known: readonly string[]): JsonFields {
  return readObject(json, ctx.path, ctx.strict ? known : undefined);
}

/** The value of `key` if present, read by `read`; `fallback()` when absent. */
function nested<T>(
  fields: JsonFields,
  key: string,
  ctx: Context,
  read: (json: unknown, ctx: Context) => T,
  fallback?: () => T,
): T {
  const value = fieldOf(fields, key);
  if (value === undefined) {
    if (fallback) return fallback();
    throw invalid(`${fields.path}.${key}`, "is missing");
  }
  return read(value, { path: `${fields.path}.${key}`, strict: ctx.strict });
}

function items<T>(
  list: readonly unknown[],
  path: string,
  ctx: Context,
  read: (json: unknown, ctx: Context) => T,
): T[] {
  return list.map((item, index) => read(item, { path: `${path}[${index}]`, strict: ctx.strict }));
}

function strings(list: readonly unknown[], path: string): string[] {
  return list.map((item, index) => {
    if (typeof item !== "string") {
      throw invalid(`${path}[${index}]`, `must be a string, not ${describeJson(item)}`);
    }
    return item;
  });
}

function readMountCapabilities(json: unknown, ctx: Context): RunnerMountCapabilities {
  const keys = Object.keys(DEFAULT_RUNNER_MOUNT_CAPABILITIES) as (keyof RunnerMountCapabilities)[];
  const fields = objectIn(json, ctx, keys);
  const out = { ...DEFAULT_RUNNER_MOUNT_CAPABILITIES };
  for (const key of keys) out[key] = readBoolean(fields, key, false);
  return out;
}

function readCapabilities(json: unknown, ctx: Context): RunnerCapabilities {
  const required = [
    "command_exec",
    "file_read",
    "file_write",
    "port_preview",
    "snapshots",
    "cancellation",
  ] as const;
  const fields = objectIn(json, ctx, [...required, "artifact_export", "mounts"]);
  return {
    command_exec: readBoolean(fields, "command_exec"),
    file_read: readBoolean(fields, "file_read"),
    file_write: readBoolean(fields, "file_write"),
    port_preview: readBoolean(fields, "port_preview"),
    snapshots: readBoolean(fields, "snapshots"),
    cancellation: readBoolean(fields, "cancellation"),
    artifact_export: readBoolean(fields, "artifact_export", false),
    mounts: nested(fields, "mounts", ctx, readMountCapabilities, () => ({
      ...DEFAULT_RUNNER_MOUNT_CAPABILITIES,
    })),
  };
}

function readSecretRef(json: unknown, ctx: Context): RunnerSecretRef {
  return { id: requiredString(objectIn(json, ctx, ["id"]), "id") };
}

function readMountKind(value: unknown, path: string): RunnerMountKind {
  if (typeof value !== "string" || !(RUNNER_MOUNT_KINDS as readonly string[]).includes(value)) {
    const got = typeof value === "string" ? `"${value}"` : describeJson(value);
    throw invalid(path, `must be one of ${RUNNER_MOUNT_KINDS.join(", ")}, not ${got}`);
  }
  return value as RunnerMountKind;
}

function readMountIntent(json: unknown, ctx: Context): RunnerMountIntent {
  const fields = objectIn(json, ctx, ["kind", "uri", "credentials"]);
  const kindValue = fieldOf(fields, "kind");
  if (kindValue === undefined) throw invalid(`${ctx.path}.kind`, "is missing");
  const intent: RunnerMountIntent = {
    kind: readMountKind(kindValue, `${ctx.path}.kind`),
    uri: requiredString(fields, "uri"),
  };
  const credentials = fieldOf(fields, "credentials");
  if (credentials !== undefined && credentials !== null) {
    intent.credentials = readSecretRef(credentials, {
      path: `${ctx.path}.credentials`,
      strict: ctx.strict,
    });
  }
  return intent;
}

function readMount(json: unknown, ctx: Context): RunnerMount {
  const fields = objectIn(json, ctx, ["name", "path", "read_only", "intent"]);
  return {
    name: requiredString(fields, "name"),
    path: requiredString(fields, "path"),
    read_only: readBoolean(fields, "read_only"),
    intent: nested(fields, "intent", ctx, readMountIntent, () => ({
      kind: "provider_native",
      uri: "",
    })),
  };
}

function readManifestEntry(json: unknown, ctx: Context): RunnerManifestEntry {
  const fields = objectIn(json, ctx, ["source", "target", "writable"]);
  return {
    source: requiredString(fields, "source"),
    target: requiredString(fields, "target"),
    writable: readBoolean(fields, "writable"),
  };
}

function readManifest(json: unknown, ctx: Context): RunnerManifest {
  const fields = objectIn(json, ctx, ["entries", "mounts"]);
  return {
    entries: items(
      readArray(fields, "entries", true),
      `${ctx.path}.entries`,
      ctx,
      readManifestEntry,
    ),
    mounts: items(readArray(fields, "mounts", true), `${ctx.path}.mounts`, ctx, readMount),
  };
}

function readDestination(json: unknown, ctx: Context): RunnerDestination {
  const fields = objectIn(json, ctx, ["id", "provider_id", "config", "default_manifest"]);
  return {
    id: requiredString(fields, "id"),
    provider_id: requiredString(fields, "provider_id"),
    config: readJsonValue(fields, "config"),
    default_manifest: nested(fields, "default_manifest", ctx, readManifest, () => ({
      entries: [],
      mounts: [],
    })),
  };
}

function readSnapshotRef(json: unknown, ctx: Context): RunnerSnapshotRef {
  const fields = objectIn(json, ctx, ["provider_id", "snapshot_id", "metadata"]);
  return {
    provider_id: requiredString(fields, "provider_id"),
    snapshot_id: requiredString(fields, "snapshot_id"),
    metadata: readJsonValue(fields, "metadata"),
  };
}

/** Reads a `RunnerCapabilities`; unknown fields ignored unless asked. @throws SandboxError `INVALID_REQUEST`. */
export function parseRunnerCapabilities(
  json: unknown,
  options: RunnerParseOptions = {},
): RunnerCapabilities {
  return readCapabilities(json, contextOf(options, "RunnerCapabilities", false));
}

/** Reads a `RunnerDestination` (request body: unknown fields refused). @throws SandboxError `INVALID_REQUEST`. */
export function parseRunnerDestination(
  json: unknown,
  options: RunnerParseOptions = {},
): RunnerDestination {
  return readDestination(json, contextOf(options, "RunnerDestination", true));
}

/** Reads a `RunnerManifest` (part of a destination: unknown fields refused). @throws SandboxError `INVALID_REQUEST`. */
export function parseRunnerManifest(
  json: unknown,
  options: RunnerParseOptions = {},
): RunnerManifest {
  return readManifest(json, contextOf(options, "RunnerManifest", true));
}

/** Reads a `RunnerMount` (part of a destination: unknown fields refused). @throws SandboxError `INVALID_REQUEST`. */
export function parseRunnerMount(json: unknown, options: RunnerParseOptions = {}): RunnerMount {
  return readMount(json, contextOf(options, "RunnerMount", true));
}

/** Reads a `RunnerSessionState` (request body: unknown fields refused). @throws SandboxError `INVALID_REQUEST`. */
export function parseRunnerSessionState(
  json: unknown,
  options: RunnerParseOptions = {},
): RunnerSessionState {
  const ctx = contextOf(options, "RunnerSessionState", true);
  const fields = objectIn(json, ctx, [
    "provider_id",
    "session_id",
    "destination_id",
    "snapshot",
    "metadata",
  ]);
  const snapshot = fieldOf(fields, "snapshot");
  return {
    provider_id: requiredString(fields, "provider_id"),
    session_id: requiredString(fields, "session_id"),
    destination_id: requiredString(fields, "destination_id"),
    snapshot:
      snapshot === undefined || snapshot === null
        ? null
        : readSnapshotRef(snapshot, { path: `${ctx.path}.snapshot`, strict: ctx.strict }),
    metadata: readJsonValue(fields, "metadata"),
  };
}

/** Reads a `RunnerSnapshotRef`; unknown fields ignored unless asked. @throws SandboxError `INVALID_REQUEST`. */
export function parseRunnerSnapshotRef(
  json: unknown,
  options: RunnerParseOptions = {},
): RunnerSnapshotRef {
  return readSnapshotRef(json, contextOf(options, "RunnerSnapshotRef", false));
}

/** Reads a `ThreadRunnerBinding`; unknown fields ignored unless asked. @throws SandboxError `INVALID_REQUEST`. */
export function parseThreadRunnerBinding(
  json: unknown,
  options: RunnerParseOptions = {},
): ThreadRunnerBinding {
  const ctx = contextOf(options, "ThreadRunnerBinding", false);
  const fields = objectIn(json, ctx, ["destination", "workspace", "read_roots"]);
  return {
    destination: nested(fields, "destination", ctx, readDestination),
    workspace: requiredString(fields, "workspace"),
    read_roots: strings(readArray(fields, "read_roots", true), `${ctx.path}.read_roots`),
  };
}

/** Reads a `RunnerCommandRequest` (request body: unknown fields refused). @throws SandboxError `INVALID_REQUEST`. */
export function parseRunnerCommandRequest(
  json: unknown,
  options: RunnerParseOptions = {},
): RunnerCommandRequest {
  const ctx = contextOf(options, "RunnerCommandRequest", true);
  const fields = objectIn(json, ctx, ["command_id", "program", "args", "cwd", "env"]);
  const env = readArray(fields, "env", true).map((entry, index): [string, string] => {
    if (
      !Array.isArray(entry) ||
      entry.length !== 2 ||
      typeof entry[0] !== "string" ||
      typeof entry[1] !== "string"
    ) {
      throw invalid(
        `${ctx.path}.env[${index}]`,
        `must be an array of two strings [name, value], not ${describeJson(entry)}`,
      );
    }
    return [entry[0], entry[1]];
  });
  return {
    command_id: requiredString(fields, "command_id"),
    program: requiredString(fields, "program"),
    args: strings(readArray(fields, "args", true), `${ctx.path}.args`),
    cwd: optionalString(fields, "cwd"),
    env,
  };
}

/** Reads a `RunnerCommandResult`; unknown fields ignored unless asked. @throws SandboxError `INVALID_REQUEST`. */
export function parseRunnerCommandResult(
  json: unknown,
  options: RunnerParseOptions = {},
): RunnerCommandResult {
  const ctx = contextOf(options, "RunnerCommandResult", false);
  const fields = objectIn(json, ctx, ["command_id", "exit_code", "stdout", "stderr"]);
  const exitCode = fieldOf(fields, "exit_code");
  return {
    command_id: requiredString(fields, "command_id"),
    exit_code:
      exitCode === undefined || exitCode === null
        ? null
        : readInteger(exitCode, `${ctx.path}.exit_code`, I32_MIN, I32_MAX),
    stdout: requiredString(fields, "stdout"),
    stderr: requiredString(fields, "stderr"),
  };
}

/** Reads a `RunnerFileReadRequest` (request body: unknown fields refused). @throws SandboxError `INVALID_REQUEST`. */
export function parseRunnerFileReadRequest(
  json: unknown,
  options: RunnerParseOptions = {},
): RunnerFileReadRequest {
  const ctx = contextOf(options, "RunnerFileReadRequest", true);
  return { path: requiredString(objectIn(json, ctx, ["path"]), "path") };
}

/** Reads a `RunnerFileReadResult`; unknown fields ignored unless asked. @throws SandboxError `INVALID_REQUEST`. */
export function parseRunnerFileReadResult(
  json: unknown,
  options: RunnerParseOptions = {},
): RunnerFileReadResult {
  const ctx = contextOf(options, "RunnerFileReadResult", false);
  const fields = objectIn(json, ctx, ["path", "contents"]);
  return { path: requiredString(fields, "path"), contents: readBytesField(fields) };
}

/** Reads a `RunnerFileWriteRequest` (request body: unknown fields refused). @throws SandboxError `INVALID_REQUEST`. */
export function parseRunnerFileWriteRequest(
  json: unknown,
  options: RunnerParseOptions = {},
): RunnerFileWriteRequest {
  const ctx = contextOf(options, "RunnerFileWriteRequest", true);
  const fields = objectIn(json, ctx, ["path", "contents"]);
  return { path: requiredString(fields, "path"), contents: readBytesField(fields) };
}

function readBytesField(fields: JsonFields): number[] {
  const list = readArray(fields, "contents", false);
  checkBytes(list, `${fields.path}.contents`);
  return [...(list as number[])];
}

/** Reads a `RunnerPortRequest` (request body: unknown fields refused). @throws SandboxError `INVALID_REQUEST`. */
export function parseRunnerPortRequest(
  json: unknown,
  options: RunnerParseOptions = {},
): RunnerPortRequest {
  const ctx = contextOf(options, "RunnerPortRequest", true);
  const fields = objectIn(json, ctx, ["port", "label"]);
  return { port: readPort(fields), label: optionalString(fields, "label") };
}

/** Reads a `RunnerPortResult`; unknown fields ignored unless asked. @throws SandboxError `INVALID_REQUEST`. */
export function parseRunnerPortResult(
  json: unknown,
  options: RunnerParseOptions = {},
): RunnerPortResult {
  const ctx = contextOf(options, "RunnerPortResult", false);
  const fields = objectIn(json, ctx, ["port", "url"]);
  return { port: readPort(fields), url: optionalString(fields, "url") };
}

function readPort(fields: JsonFields): number {
  const port = fieldOf(fields, "port");
  if (port === undefined) throw invalid(`${fields.path}.port`, "is missing (an integer 0-65535)");
  return readInteger(port, `${fields.path}.port`, 0, 65_535);
}

/** Reads a `RunnerArtifactExportRequest` (request body: unknown fields refused). @throws SandboxError `INVALID_REQUEST`. */
export function parseRunnerArtifactExportRequest(
  json: unknown,
  options: RunnerParseOptions = {},
): RunnerArtifactExportRequest {
  const ctx = contextOf(options, "RunnerArtifactExportRequest", true);
  const fields = objectIn(json, ctx, ["path", "recursive"]);
  return {
    path: requiredString(fields, "path"),
    recursive: readBoolean(fields, "recursive", false),
  };
}

/** Reads a `RunnerArtifactExportResult`; unknown fields ignored unless asked. @throws SandboxError `INVALID_REQUEST`. */
export function parseRunnerArtifactExportResult(
  json: unknown,
  options: RunnerParseOptions = {},
): RunnerArtifactExportResult {
  const ctx = contextOf(options, "RunnerArtifactExportResult", false);
  const fields = objectIn(json, ctx, ["path", "artifact_id", "url", "metadata"]);
  return {
    path: requiredString(fields, "path"),
    artifact_id: requiredString(fields, "artifact_id"),
    url: optionalString(fields, "url"),
    metadata: readJsonValue(fields, "metadata"),
  };
}

function checkBytes(list: readonly unknown[], path: string): void {
  for (let index = 0; index < list.length; index++) {
    const byte = list[index];
    if (typeof byte !== "number" || !Number.isInteger(byte) || byte < 0 || byte > 255) {
      throw invalid(
        `${path}[${index}]`,
        `must be an integer from 0 to 255, not ${describeJson(byte)}`,
      );
    }
  }
}

/** Bytes as serde_json writes a `Vec<u8>`: `[104, 105]` for "hi". */
export function bytesToJson(bytes: Uint8Array): number[] {
  return Array.from(bytes);
}

/**
 * Bytes from a serde `Vec<u8>` in JSON: an array whose every item is an integer 0–255.
 * @param path name of the value in messages (default `"contents"`).
 * @throws SandboxError `INVALID_REQUEST` naming the first bad item.
 */
export function bytesFromJson(json: unknown, path = "contents"): Uint8Array {
  if (!Array.isArray(json))
    throw invalid(path, `must be an array of bytes, not ${describeJson(json)}`);
  checkBytes(json, path);
  return Uint8Array.from(json as number[]);
}
