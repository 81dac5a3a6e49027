/**
 * The process registry contract of seed 003 (`../shared/seeds/003_*.txt`): descriptors of the
 * processes (here: runner commands) a host runs, their lifecycle events and output chunks,
 * ported to TypeScript with the same JSON on the wire.
 *
 * Unlike seed 000, these types are camelCase on the wire (`#[serde(rename_all = "camelCase")]`):
 * `processId`, `commandSummary`, `startedAt`. `Option` fields are left out when `None`
 * (`skip_serializing_if`), so here they are optional properties that are absent, never
 * `undefined` or `null`. Times are RFC 3339 strings as `time::serde::rfc3339` writes them
 * (./rfc3339.ts): `"1970-01-01T00:00:00Z"`, `"2023-11-14T22:13:20.12Z"`.
 *
 * The registry itself (state, output ring, subscriptions) is ./process-registry.ts.
 *
 * @module
 */
import {
  describeJson,
  fieldOf,
  invalid,
  type JsonFields,
  readArray,
  readBoolean,
  readInteger,
  readObject,
  requiredString,
} from "./json-read.ts";
import { formatRfc3339, normalizeRfc3339 } from "./rfc3339.ts";
import { rustDebugString } from "./rust-debug.ts";
import type { RemoteRunnerSessionId, RunnerDestinationId } from "./types.ts";

/** Id of a process in a registry (seed: `ProcessId = String`). */
export type ProcessId = string;

/** What started a process (seed: `ProcessOrigin`, snake_case). Runner commands are `"remote_runner"`. */
export type ProcessOrigin = "command_exec" | "background_task" | "shell_tool" | "remote_runner";

/** Every {@link ProcessOrigin}, in declaration order. */
export const PROCESS_ORIGINS: readonly ProcessOrigin[] = [
  "command_exec",
  "background_task",
  "shell_tool",
  "remote_runner",
];

/**
 * Where a process is in its life (seed: `ProcessState`, externally tagged, variants snake_case,
 * variant fields camelCase): `"starting"`, `"running"`, `"stopping"`, `"stopped"`,
 * `{"exited": {"exitCode": 0}}` (`exitCode` is `null` when the process was killed by a
 * signal), `{"failed": {"error": "spawn failed"}}`.
 *
 * Moves: starting → running → (stopping →) exited | failed | stopped; stopping may go back to
 * running when a stop fails. exited, failed and stopped are final ({@link isFinishedState}).
 */
export type ProcessState =
  | "starting"
  | "running"
  | "stopping"
  | "stopped"
  | { exited: { exitCode: number | null } }
  | { failed: { error: string } };

/** Which output stream a chunk is from (seed 003's `TaskOutputStream`, snake_case). */
export type TaskOutputStream = "stdout" | "stderr" | "log";

/** Every {@link TaskOutputStream}, in declaration order. */
export const TASK_OUTPUT_STREAMS: readonly TaskOutputStream[] = ["stdout", "stderr", "log"];

/** A registered process (seed: `ProcessDescriptor`). Optional fields are absent when unknown. */
export interface ProcessDescriptor {
  processId: ProcessId;
  origin: ProcessOrigin;
  state: ProcessState;
  /** Program and arguments, unredacted. */
  command: string[];
  /** {@link commandSummary} of `command`: secret-like arguments redacted, for display. */
  commandSummary: string;
  cwd?: string;
  /** OS process id (u32), when there is one. */
  pid?: number;
  taskId?: string;
  threadId?: string;
  turnId?: string;
  runnerDestinationId?: RunnerDestinationId;
  runnerSessionId?: RemoteRunnerSessionId;
  /** Whether `stop` can end it now (false once it has finished). */
  stoppable: boolean;
  /** RFC 3339. */
  startedAt: string;
  /** RFC 3339; moves on every change and every output chunk. */
  updatedAt: string;
  /** The last bytes of stdout (a registry bounds how many), when any were written. */
  stdoutTail?: string;
  /** The last bytes of stderr, when any were written. */
  stderrTail?: string;
}

/** A chunk of a process's output (seed: `ProcessOutput`). */
export interface ProcessOutput {
  processId: ProcessId;
  stream: TaskOutputStream;
  chunk: string;
  /**
   * Bytes of output lost just before this chunk (u64, default 0): cut by the producer, cut by
   * a registry's bound, or, for a reader resuming from a cursor, dropped from the registry's
   * ring before the reader came back.
   */
  droppedBytes: number;
  threadId?: string;
  turnId?: string;
  /** RFC 3339. */
  timestamp: string;
}

/** Answer to a stop request (seed: `ProcessStopResult`). */
export interface ProcessStopResult {
  processId: ProcessId;
  /** Whether the process was stopped by this request. */
  stopped: boolean;
  process?: ProcessDescriptor;
}

/** Event: a process was registered (seed: `ProcessStarted`). */
export interface ProcessStarted {
  process: ProcessDescriptor;
  timestamp: string;
}

/** Event: a stop was requested (seed: `ProcessStopping`). */
export interface ProcessStopping {
  processId: ProcessId;
  reason?: string;
  timestamp: string;
}

/** Event: a process exited by itself (seed: `ProcessExited`). */
export interface ProcessExited {
  process: ProcessDescriptor;
  /** Absent when the process has no exit code (killed by a signal). */
  exitCode?: number;
  timestamp: string;
}

/** Event: a process was stopped (seed: `ProcessStopped`). */
export interface ProcessStopped {
  process: ProcessDescriptor;
  reason?: string;
  timestamp: string;
}

/** Event: a process failed, e.g. could not be started (seed: `ProcessFailed`). */
export interface ProcessFailed {
  process: ProcessDescriptor;
  error: string;
  timestamp: string;
}

/**
 * Stops one process (seed: trait `ProcessStopper`). `stop` resolves once the process has
 * ended or was told to; it rejects when it cannot stop it.
 */
export interface ProcessStopper {
  stop(reason: string | null): Promise<void>;
}

/**
 * Where a process's owner reports it (seed: trait `ProcessRegistrySink`). Rejections are
 * SandboxErrors (e.g. `PROCESS_NOT_FOUND`).
 */
export interface ProcessRegistrySink {
  /** Registers a process (and how to stop it); resolves the descriptor as registered. */
  registerProcess(
    process: ProcessDescriptor,
    stopper: ProcessStopper | null,
  ): Promise<ProcessDescriptor>;
  appendProcessOutput(output: ProcessOutput): Promise<void>;
  markProcessExited(processId: ProcessId, exitCode: number | null): Promise<void>;
  markProcessFailed(processId: ProcessId, error: string): Promise<void>;
  markProcessStopped(processId: ProcessId, reason: string | null): Promise<void>;
}

/** Whether a state is final: exited, failed or stopped. */
export function isFinishedState(state: ProcessState): boolean {
  return (
    state === "stopped" || (typeof state === "object" && ("exited" in state || "failed" in state))
  );
}

/** The state's variant name: `"running"`, `"exited"`, `"failed"`, ... */
export function processStateName(
  state: ProcessState,
): "starting" | "running" | "stopping" | "stopped" | "exited" | "failed" {
  if (typeof state === "string") return state;
  return "exited" in state ? "exited" : "failed";
}

const SECRET_LIKE = [
  "token",
  "secret",
  "password",
  "passwd",
  "apikey",
  "api_key",
  "authorization",
  "bearer",
] as const;

const WHITESPACE = /\p{White_Space}/u;

function redactCommandPart(part: string): string {
  // Rust's to_ascii_lowercase: only A-Z change.
  const lower = part.replace(/[A-Z]/g, (letter) => letter.toLowerCase());
  if (SECRET_LIKE.some((needle) => lower.includes(needle))) {
    const equals = part.indexOf("=");
    return equals === -1 ? "<redacted>" : `${part.slice(0, equals)}=<redacted>`;
  }
  return WHITESPACE.test(part) ? rustDebugString(part) : part;
}

/**
 * A command line for display, exactly as seed 003's `command_summary`: the parts joined by a
 * space, where a part whose ASCII-lower-cased text contains token, secret, password, passwd,
 * apikey, api_key, authorization or bearer becomes `KEY=<redacted>` (the text before its first
 * `=`) or `<redacted>`, and a part holding whitespace (Unicode `White_Space`, as Rust's
 * `char::is_whitespace`) is quoted as Rust's `{:?}` quotes it (./rust-debug.ts).
 *
 * @example commandSummary(["curl", "API_KEY=abc123", "--header", "Authorization: Bearer abc123", "hello world"])
 *   === 'curl API_KEY=<redacted> --header <redacted> "hello world"'
 */
export function commandSummary(command: readonly string[]): string {
  return command.map(redactCommandPart).join(" ");
}

/** What {@link createProcessDescriptor} needs; the rest has defaults. */
export interface ProcessDescriptorInit {
  processId: ProcessId;
  /** Default `"remote_runner"`. */
  origin?: ProcessOrigin;
  command: readonly string[];
  cwd?: string;
  pid?: number;
  taskId?: string;
  threadId?: string;
  turnId?: string;
  runnerDestinationId?: RunnerDestinationId;
  runnerSessionId?: RemoteRunnerSessionId;
  /** Default `true`. */
  stoppable?: boolean;
}

/**
 * A new descriptor in state `"starting"`, its summary computed by {@link commandSummary} and both
 * times set to `nowMs` (Unix epoch milliseconds, default `Date.now()`).
 */
export function createProcessDescriptor(
  init: ProcessDescriptorInit,
  nowMs: number = Date.now(),
): ProcessDescriptor {
  const time = formatRfc3339(nowMs);
  return canonicalDescriptor({
    ...init,
    origin: init.origin ?? "remote_runner",
    state: "starting",
    command: [...init.command],
    commandSummary: commandSummary(init.command),
    stoppable: init.stoppable ?? true,
    startedAt: time,
    updatedAt: time,
  });
}

const OPTIONAL_DESCRIPTOR_FIELDS = [
  "cwd",
  "pid",
  "taskId",
  "threadId",
  "turnId",
  "runnerDestinationId",
  "runnerSessionId",
] as const;

/**
 * A deep copy of a descriptor with its fields in the seed's declaration order (so
 * `JSON.stringify` writes what serde writes) and absent options left out.
 */
export function canonicalDescriptor(process: ProcessDescriptor): ProcessDescriptor {
  const out: Record<string, unknown> = {
    processId: process.processId,
    origin: process.origin,
    state: copyState(process.state),
    command: [...process.command],
    commandSummary: process.commandSummary,
  };
  for (const key of OPTIONAL_DESCRIPTOR_FIELDS) {
    if (process[key] !== undefined) out[key] = process[key];
  }
  out["stoppable"] = process.stoppable;
  out["startedAt"] = process.startedAt;
  out["updatedAt"] = process.updatedAt;
  if (process.stdoutTail !== undefined) out["stdoutTail"] = process.stdoutTail;
  if (process.stderrTail !== undefined) out["stderrTail"] = process.stderrTail;
  return out as unknown as ProcessDescriptor;
}

function copyState(state: ProcessState): ProcessState {
  if (typeof state === "string") return state;
  return "exited" in state
    ? { exited: { exitCode: state.exited.exitCode } }
    : { failed: { error: state.failed.error } };
}

// --- Reading JSON (serde's rules: unknown fields ignored, absent options left out) ---

const I32_MIN = -2_147_483_648;
const I32_MAX = 2_147_483_647;
const U32_MAX = 4_294_967_295;

function readTime(fields: JsonFields, key: string): string {
  const text = requiredString(fields, key);
  const normalized = normalizeRfc3339(text);
  if (normalized === null) {
    throw invalid(`${fields.path}.${key}`, `must be an RFC 3339 date-time, not "${text}"`);
  }
  return normalized;
}

function readEnum<T extends string>(fields: JsonFields, key: string, values: readonly T[]): T {
  const value = requiredString(fields, key);
  if (!(values as readonly string[]).includes(value)) {
    throw invalid(`${fields.path}.${key}`, `must be one of ${values.join(", ")}, not "${value}"`);
  }
  return value as T;
}

/** Copies `key` when present and not null, read by `read`. */
function optional<T>(
  fields: JsonFields,
  key: string,
  read: (value: unknown, path: string) => T,
  into: Record<string, unknown>,
): void {
  const value = fieldOf(fields, key);
  if (value !== undefined && value !== null) into[key] = read(value, `${fields.path}.${key}`);
}

function stringAt(value: unknown, path: string): string {
  if (typeof value !== "string")
    throw invalid(path, `must be a string, not ${describeJson(value)}`);
  return value;
}

/**
 * Reads a `ProcessState` from JSON as serde does: a unit variant as its name (or, as serde_json
 * also accepts, `{"running": null}`), `{"exited": {"exitCode": 0 | null}}` (absent `exitCode` is
 * `null`), `{"failed": {"error": "..."}}`.
 * @throws SandboxError `INVALID_REQUEST`.
 */
export function parseProcessState(json: unknown, path = "ProcessState"): ProcessState {
  const units = ["starting", "running", "stopping", "stopped"] as const;
  if (typeof json === "string") {
    if ((units as readonly string[]).includes(json)) return json as (typeof units)[number];
    if (json === "exited" || json === "failed") {
      throw invalid(path, `"${json}" needs its fields: {"${json}": {...}}`);
    }
    throw invalid(path, `is not a process state: "${json}"`);
  }
  const fields = readObject(json, path);
  const keys = Object.keys(fields.value);
  if (keys.length !== 1) throw invalid(path, "must have exactly one variant name as its key");
  const name = keys[0]!;
  const body = fields.value[name];
  if ((units as readonly string[]).includes(name)) {
    if (body !== null) throw invalid(`${path}.${name}`, "must be null for a state without fields");
    return name as (typeof units)[number];
  }
  if (name === "exited") {
    const exited = readObject(body, `${path}.exited`);
    const exitCode = fieldOf(exited, "exitCode");
    return {
      exited: {
        exitCode:
          exitCode === undefined || exitCode === null
            ? null
            : readInteger(exitCode, `${path}.exited.exitCode`, I32_MIN, I32_MAX),
      },
    };
  }
  if (name === "failed") {
    return { failed: { error: requiredString(readObject(body, `${path}.failed`), "error") } };
  }
  throw invalid(path, `is not a process state: "${name}"`);
}

/** Reads a `ProcessDescriptor` (camelCase, RFC 3339 times normalized). @throws SandboxError `INVALID_REQUEST`. */
export function parseProcessDescriptor(
  json: unknown,
  path = "ProcessDescriptor",
): ProcessDescriptor {
  const fields = readObject(json, path);
  const state = fieldOf(fields, "state");
  if (state === undefined) throw invalid(`${path}.state`, "is missing");
  const command = readArray(fields, "command", false).map((part, index) =>
    stringAt(part, `${path}.command[${index}]`),
  );
  const extra: Record<string, unknown> = {};
  for (const key of [
    "cwd",
    "taskId",
    "threadId",
    "turnId",
    "runnerDestinationId",
    "runnerSessionId",
  ]) {
    optional(fields, key, stringAt, extra);
  }
  optional(fields, "pid", (value, at) => readInteger(value, at, 0, U32_MAX), extra);
  optional(fields, "stdoutTail", stringAt, extra);
  optional(fields, "stderrTail", stringAt, extra);
  return canonicalDescriptor({
    processId: requiredString(fields, "processId"),
    origin: readEnum(fields, "origin", PROCESS_ORIGINS),
    state: parseProcessState(state, `${path}.state`),
    command,
    commandSummary: requiredString(fields, "commandSummary"),
    stoppable: readBoolean(fields, "stoppable"),
    startedAt: readTime(fields, "startedAt"),
    updatedAt: readTime(fields, "updatedAt"),
    ...extra,
  });
}

/** Reads a `ProcessOutput` (`droppedBytes` defaults to 0). @throws SandboxError `INVALID_REQUEST`. */
export function parseProcessOutput(json: unknown, path = "ProcessOutput"): ProcessOutput {
  const fields = readObject(json, path);
  const dropped = fieldOf(fields, "droppedBytes");
  const out: Record<string, unknown> = {
    processId: requiredString(fields, "processId"),
    stream: readEnum(fields, "stream", TASK_OUTPUT_STREAMS),
    chunk: requiredString(fields, "chunk"),
    droppedBytes:
      dropped === undefined
        ? 0
        : readInteger(dropped, `${path}.droppedBytes`, 0, Number.MAX_SAFE_INTEGER),
  };
  optional(fields, "threadId", stringAt, out);
  optional(fields, "turnId", stringAt, out);
  out["timestamp"] = readTime(fields, "timestamp");
  return out as unknown as ProcessOutput;
}

/** Reads a `ProcessStopResult`. @throws SandboxError `INVALID_REQUEST`. */
export function parseProcessStopResult(
  json: unknown,
  path = "ProcessStopResult",
): ProcessStopResult {
  const fields = readObject(json, path);
  const result: ProcessStopResult = {
    processId: requiredString(fields, "processId"),
    stopped: readBoolean(fields, "stopped"),
  };
  const process = fieldOf(fields, "process");
  if (process !== undefined && process !== null) {
    result.process = parseProcessDescriptor(process, `${path}.process`);
  }
  return result;
}
