/**
 * JSON Schemas of the seed 000 types that arrive as HTTP request bodies, in keywords that both
 * draft-07 (what fastify's ajv compiles) and draft 2020-12 read the same way. Each has an `$id`
 * and no `$ref`, so it can be given to `app.addSchema` and referred to as
 * `{ $ref: "RunnerCommandRequest#" }`, or used inline.
 *
 * They accept what serde accepts, with the house rule for request bodies on top: unknown fields
 * are refused (`additionalProperties: false`; serde would ignore them). Absent fields that have a
 * serde default are optional here, and `default` records that value for the docs, but ajv does
 * not fill it in (the server runs ajv with `useDefaults: false`; with fastify's own defaults,
 * `coerceTypes` would even turn a `null` cwd into `""`): the `parse*` functions of ./parse.ts
 * apply the defaults and check everything these schemas check, so read a body with one of them.
 *
 * @module
 */
import { RUNNER_MOUNT_KINDS } from "./types.ts";

const string = (description: string) => ({ type: "string", description }) as const;
const path = (description: string) =>
  ({ type: "string", description: `${description} (PathBuf).` }) as const;
const nullable = <T extends object>(schema: T) => ({ anyOf: [schema, { type: "null" }] }) as const;

/** `Vec<u8>` as serde_json writes it: an array of integers 0–255. */
const bytesSchema = {
  type: "array",
  items: { type: "integer", minimum: 0, maximum: 255 },
  description: "The bytes, each an integer 0-255 (Vec<u8>).",
} as const;

const secretRefSchema = {
  type: "object",
  additionalProperties: false,
  required: ["id"],
  properties: { id: string("Id of a secret the provider holds; never the secret.") },
} as const;

const mountIntentSchema = {
  type: "object",
  additionalProperties: false,
  required: ["kind", "uri"],
  default: { kind: "provider_native", uri: "" },
  properties: {
    kind: { type: "string", enum: [...RUNNER_MOUNT_KINDS] },
    uri: string('What to mount, e.g. "r2://bucket/prefix".'),
    credentials: nullable(secretRefSchema),
  },
} as const;

const mountSchema = {
  type: "object",
  additionalProperties: false,
  required: ["name", "path", "read_only"],
  properties: {
    name: { type: "string" },
    path: path("Where the mount appears in the session"),
    read_only: { type: "boolean" },
    intent: mountIntentSchema,
  },
} as const;

const manifestEntrySchema = {
  type: "object",
  additionalProperties: false,
  required: ["source", "target", "writable"],
  properties: {
    source: path("Path on the provider's side"),
    target: path("Path in the session's workspace"),
    writable: { type: "boolean", description: "Whether code in the session may change it." },
  },
} as const;

const manifestSchema = {
  type: "object",
  additionalProperties: false,
  default: { entries: [], mounts: [] },
  properties: {
    entries: { type: "array", items: manifestEntrySchema, default: [] },
    mounts: { type: "array", items: mountSchema, default: [] },
  },
} as const;

const snapshotRefSchema = {
  type: "object",
  additionalProperties: false,
  required: ["provider_id", "snapshot_id"],
  properties: {
    provider_id: { type: "string" },
    snapshot_id: { type: "string" },
    // No `default` keyword here: inside anyOf ajv would refuse it in strict mode.
    metadata: { description: "Provider-specific JSON; default null." },
  },
} as const;

/** Schema of a `RunnerDestination` (seed 000). */
export const runnerDestinationSchema = {
  $id: "RunnerDestination",
  type: "object",
  additionalProperties: false,
  required: ["id", "provider_id"],
  properties: {
    id: string("Destination id."),
    provider_id: string("Provider that serves the destination."),
    config: { description: "Provider-specific JSON; default null.", default: null },
    default_manifest: manifestSchema,
  },
} as const;

/** Schema of a `RunnerSessionState` (seed 000), as given to resume a session. */
export const runnerSessionStateSchema = {
  $id: "RunnerSessionState",
  type: "object",
  additionalProperties: false,
  required: ["provider_id", "session_id", "destination_id"],
  properties: {
    provider_id: { type: "string" },
    session_id: { type: "string" },
    destination_id: { type: "string" },
    snapshot: { ...nullable(snapshotRefSchema), default: null },
    metadata: { description: "Provider-specific JSON; default null.", default: null },
  },
} as const;

/** Schema of a `RunnerCommandRequest` (seed 000). */
export const runnerCommandRequestSchema = {
  $id: "RunnerCommandRequest",
  type: "object",
  additionalProperties: false,
  required: ["command_id", "program"],
  properties: {
    command_id: string("Client-chosen id of the command, to cancel it."),
    program: string('Program to run, e.g. "python" or "node".'),
    args: { type: "array", items: { type: "string" }, default: [] },
    cwd: { ...nullable(path("Working directory in the workspace")), default: null },
    env: {
      type: "array",
      default: [],
      description: 'Environment entries in order, each [name, value]: [["RUST_LOG", "info"]].',
      // Two strings; written without tuple keywords, which draft-07 (fastify's ajv) and
      // 2020-12 spell differently.
      items: { type: "array", items: { type: "string" }, minItems: 2, maxItems: 2 },
    },
  },
} as const;

/** Schema of a `RunnerFileReadRequest` (seed 000). */
export const runnerFileReadRequestSchema = {
  $id: "RunnerFileReadRequest",
  type: "object",
  additionalProperties: false,
  required: ["path"],
  properties: { path: path("File in the workspace") },
} as const;

/** Schema of a `RunnerFileWriteRequest` (seed 000). */
export const runnerFileWriteRequestSchema = {
  $id: "RunnerFileWriteRequest",
  type: "object",
  additionalProperties: false,
  required: ["path", "contents"],
  properties: { path: path("File in the workspace"), contents: bytesSchema },
} as const;

/** Schema of a `RunnerPortRequest` (seed 000). */
export const runnerPortRequestSchema = {
  $id: "RunnerPortRequest",
  type: "object",
  additionalProperties: false,
  required: ["port"],
  properties: {
    port: { type: "integer", minimum: 0, maximum: 65_535, description: "TCP port (u16)." },
    label: { type: ["string", "null"], default: null },
  },
} as const;

/** Schema of a `RunnerArtifactExportRequest` (seed 000). */
export const runnerArtifactExportRequestSchema = {
  $id: "RunnerArtifactExportRequest",
  type: "object",
  additionalProperties: false,
  required: ["path"],
  properties: {
    path: path("File (or directory, with recursive) in the workspace"),
    recursive: { type: "boolean", default: false },
  },
} as const;

/** Every runner request schema, to register with `app.addSchema` before routes refer to them. */
export const RUNNER_REQUEST_SCHEMAS = [
  runnerDestinationSchema,
  runnerSessionStateSchema,
  runnerCommandRequestSchema,
  runnerFileReadRequestSchema,
  runnerFileWriteRequestSchema,
  runnerPortRequestSchema,
  runnerArtifactExportRequestSchema,
] as const;
