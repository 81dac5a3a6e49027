/**
 * Wire types of the service, ported from seed 004 (`../shared/seeds/004_*.txt`).
 *
 * Every interface here has exactly the JSON shape serde gives the seed's Rust type:
 * snake_case field names as declared, unit enums as snake_case strings, `Option<T>` as
 * `T | null` (absent is accepted on input), `ApprovalPolicy` externally tagged. Fields the
 * seed does not have are marked "extension" and are always optional, so a client built from
 * the seed's serde types can read every response unchanged.
 *
 * @module
 */

/** JSON value as serde_json's `Value` holds it. */
export type JsonValue =
  | null
  | boolean
  | number
  | string
  | JsonValue[]
  | { [key: string]: JsonValue };

/** JSON object as serde_json's `Map<String, Value>` holds it. */
export type JsonObject = { [key: string]: JsonValue };

/** Version of the snapshot envelope format (seed: `SNAPSHOT_VERSION`). */
export const SNAPSHOT_VERSION = 1;

/**
 * A session identifier: 1–64 ASCII letters, digits, `_` or `-` (seed: `SessionId`).
 * Validate with {@link isValidSessionId}; the seed's default id is `"default"`.
 */
export type SessionId = string;

/**
 * Language of a run (seed: `Language`; `"javascript"` is our addition).
 * The seed's default is `"python"`.
 */
export type Language = "python" | "typescript" | "javascript";

/** Every {@link Language}, in declaration order. */
export const LANGUAGES: readonly Language[] = ["python", "typescript", "javascript"];

/**
 * Resource limits of a session or of one run (seed: `SessionLimits`).
 * Defaults are {@link DEFAULT_SESSION_LIMITS}; what each means per backend is in
 * docs/limits.md.
 */
export interface SessionLimits {
  /** Memory the session's engine may use, in MiB (u32). */
  memory_mb: number;
  /** CPU time one run may spend executing guest code, in milliseconds (u32). */
  cpu_ms: number;
  /** Wall-clock time one run may take, tool calls included, in milliseconds (u32). */
  wall_ms: number;
  /** Bytes of stdout, and separately of stderr, kept per run (u32); the rest is cut. */
  max_stdout_bytes: number;
  /** External (tool) calls one run may make (u32). */
  max_external_calls: number;
  /** Nested guest call frames allowed (u16); approximate on every backend. */
  max_stack_depth: number;
}

/** The seed's `SessionLimits::default()`. Frozen; copy before changing. */
export const DEFAULT_SESSION_LIMITS: Readonly<SessionLimits> = Object.freeze({
  memory_mb: 64,
  cpu_ms: 2_000,
  wall_ms: 5_000,
  max_stdout_bytes: 65_536,
  max_external_calls: 32,
  max_stack_depth: 256,
});

/** Names of the {@link SessionLimits} fields, in declaration order. */
export const SESSION_LIMIT_NAMES: readonly (keyof SessionLimits)[] = [
  "memory_mb",
  "cpu_ms",
  "wall_ms",
  "max_stdout_bytes",
  "max_external_calls",
  "max_stack_depth",
];

/** Metadata of a session (seed: `SessionMeta`). Times are Unix epoch milliseconds. */
export interface SessionMeta {
  id: SessionId;
  /** Unix epoch milliseconds (u64). */
  created_at: number;
  /** Unix epoch milliseconds of the last run's start (u64). */
  last_used_at: number;
  language: Language;
  limits: SessionLimits;
  /** Always {@link SNAPSHOT_VERSION} for sessions this build created (u32). */
  snapshot_version: number;
}

/** Class of effect a tool has outside the sandbox (seed: `SideEffect`; default `"none"`). */
export type SideEffect = "none" | "read" | "write" | "network" | "database" | "external_system";

/** Every {@link SideEffect}, in declaration order. */
export const SIDE_EFFECTS: readonly SideEffect[] = [
  "none",
  "read",
  "write",
  "network",
  "database",
  "external_system",
];

/** Per-tool limits (seed: `CapabilityLimits`); defaults are {@link DEFAULT_CAPABILITY_LIMITS}. */
export interface CapabilityLimits {
  /** How long one call may take before it is cut off, in milliseconds (u32). */
  timeout_ms: number;
  /** Largest request (JSON of name, args, kwargs), in bytes (u32). */
  max_request_bytes: number;
  /** Largest response (JSON of the returned value), in bytes (u32). */
  max_response_bytes: number;
  /** Calls of this tool in flight at once, across all sessions (u32). */
  concurrency: number;
  /** Calls of this tool per minute across all sessions; `null` means unlimited (u32). */
  rate_per_min: number | null;
}

/** The seed's `CapabilityLimits::default()`. Frozen; copy before changing. */
export const DEFAULT_CAPABILITY_LIMITS: Readonly<CapabilityLimits> = Object.freeze({
  timeout_ms: 5_000,
  max_request_bytes: 1_048_576,
  max_response_bytes: 1_048_576,
  concurrency: 16,
  rate_per_min: null,
});

/**
 * When a tool call needs approval (seed: `ApprovalPolicy`, externally tagged):
 * `"none"`, `"manual"`, or `{"auto": {"rule": "..."}}`. Default `"none"`.
 */
export type ApprovalPolicy = "none" | "manual" | { auto: { rule: string } };

/** A host tool as guest code sees it (seed: `Capability`). */
export interface Capability {
  /** A Python identifier (`^[A-Za-z_][A-Za-z0-9_]*$`), unique in its registry. */
  name: string;
  description: string;
  /** JSON Schema of the positional arguments array (seed default `{"type": "array"}`). */
  input_schema: JsonValue;
  /** JSON Schema of the returned value (seed default `{}`: anything). */
  output_schema: JsonValue;
  side_effect: SideEffect;
  limits: CapabilityLimits;
  approval_policy: ApprovalPolicy;
  /** Whether repeating a call with the same arguments has no further effect (seed default `true`). */
  idempotent: boolean;
  /**
   * Extension: JSON Schema of the keyword arguments object. Absent means the tool takes
   * no keyword arguments beyond `{}`.
   */
  kwargs_schema?: JsonValue;
}

/**
 * A request to run code (seed: `RunRequest`).
 * On input, absent fields take the seed's defaults (language `"python"`, inputs `{}`,
 * flags `false`); `limits` may be partial (our relaxation: missing fields come from the
 * session).
 */
export interface RunRequest {
  session_id: SessionId;
  language: Language;
  code: string;
  /** Values bound as globals before the code runs. */
  inputs: JsonObject;
  /** Overrides `limits.wall_ms` for this run (ms, u32); capped by the server ceiling. */
  timeout_ms: number | null;
  /** Limits for this run, merged over the session's under the server ceilings. */
  limits: Partial<SessionLimits> | null;
  /** Take a snapshot after the run and put its id in `RunResult.snapshot_id`. */
  return_snapshot: boolean;
  /** Parse (and strip types) only; nothing runs and no tool is called. */
  validate_only: boolean;
  /** Extension: a client-chosen run id (same pattern as a session id), for cancel. */
  run_id?: string;
  /** Extension: backend to create a new session on (e.g. `"quickjs"`); ignored for existing sessions. */
  runtime?: string;
}

/** Outcome of a run (seed: `RunStatus`). */
export type RunStatus =
  | "ok"
  | "validation_error"
  | "runtime_error"
  | "timeout"
  | "cancelled"
  | "resource_exhausted"
  | "permission_denied"
  | "waiting_for_approval"
  | "interrupted";

/** Every {@link RunStatus}, in declaration order. */
export const RUN_STATUSES: readonly RunStatus[] = [
  "ok",
  "validation_error",
  "runtime_error",
  "timeout",
  "cancelled",
  "resource_exhausted",
  "permission_denied",
  "waiting_for_approval",
  "interrupted",
];

/** Severity of a diagnostic (seed: `Severity`; default `"info"`). */
export type Severity = "error" | "warning" | "info";

/**
 * A place in the user's source (seed: `Span`). Lines and columns are 1-based and count
 * UTF-16 code units on JavaScript backends; `end_*` are inclusive when present.
 */
export interface Span {
  line: number;
  column: number;
  end_line: number | null;
  end_column: number | null;
}

/** A message about a run (seed: `Diagnostic`). */
export interface Diagnostic {
  severity: Severity;
  /** UPPER_SNAKE code, listed in docs/errors.md. */
  code: string;
  message: string;
  hint: string | null;
  span: Span | null;
}

/** Outcome of one external call (seed: `CallStatus`). */
export type CallStatus = "ok" | "error" | "timeout" | "denied" | "approval_pending";

/** An error as data (seed: `ErrorObject`); `code` is UPPER_SNAKE. */
export interface ErrorObject {
  code: string;
  message: string;
  hint: string | null;
  span: Span | null;
}

/** The record of one tool call made by guest code (seed: `ExternalCallRecord`). */
export interface ExternalCallRecord {
  name: string;
  side_effect: SideEffect;
  /** Milliseconds from the call reaching the host to its outcome (u32). */
  duration_ms: number;
  status: CallStatus;
  /** `digestJson({name, args, kwargs})`: SHA3-256 hex. */
  request_digest: string;
  /** `digestJson(value returned)`, or `null` when no value was returned. */
  response_digest: string | null;
  error: ErrorObject | null;
}

/** Figures about a run (seed: `Metrics`). What each means per backend: docs/limits.md. */
export interface Metrics {
  /** Wall time of the run, queueing excluded, in milliseconds (u32). */
  duration_ms: number;
  /** Engine-reported peak memory, in bytes (u64); see docs/limits.md per backend. */
  memory_peak_bytes: number;
  /** Instructions executed where the engine counts them, else 0 (u64). */
  instructions: number;
  /** Number of records in `RunResult.external_calls` (u32). */
  external_calls_count: number;
  /** Extension: CPU time spent executing guest code, in milliseconds. */
  cpu_ms?: number;
  /** Extension: time the run waited behind other runs of its session, in milliseconds. */
  queue_ms?: number;
}

/** The answer to a {@link RunRequest} (seed: `RunResult`). */
export interface RunResult {
  status: RunStatus;
  /** Value of the last expression statement as JSON, or `null`. */
  result: JsonValue | null;
  stdout: string;
  stderr: string;
  diagnostics: Diagnostic[];
  external_calls: ExternalCallRecord[];
  /** Id of the snapshot taken when `return_snapshot` was set, else `null`. */
  snapshot_id: string | null;
  metrics: Metrics;
  error: ErrorObject | null;
  /** Extension: id of this run (for cancel and lookup). */
  run_id?: string;
  /** Extension: session the run belongs to. */
  session_id?: string;
  /** Extension: with status `waiting_for_approval`, the approvals the run waits for. */
  approvals?: import("../tools/approvals.ts").Approval[];
}

/**
 * What a tool handler receives (seed: `ToolCallContext`). `args` and `kwargs` are JSON;
 * the remaining fields are extensions describing where the call came from.
 */
export interface ToolCallContext {
  name: string;
  args: JsonValue[];
  kwargs: JsonObject;
  /** Extension: the calling session. */
  session_id?: SessionId;
  /** Extension: the calling run. */
  run_id?: string;
  /** Extension: aborted when the call is cut off (timeout, cancelled run). */
  signal?: AbortSignal;
}
