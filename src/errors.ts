/**
 * The one registry of error codes, and the one error class the host throws.
 *
 * Codes are UPPER_SNAKE as in seed 004 (`INVALID_SESSION_ID`). On the HTTP wire the same
 * code is written lower_snake inside seed 002's envelope `{"error": {"code", "message"}}`.
 * docs/errors.md lists every code here; test/errors-doc.test.ts keeps the two in sync.
 *
 * @module
 */
import type { ErrorObject, Span } from "./contract/types.ts";

/** Where a code shows up, for the docs. */
export type ErrorScope = "http" | "run" | "call" | "diagnostic";

/** One entry of {@link ERROR_CODES}. */
export interface ErrorCodeInfo {
  /** HTTP status when the code is answered as an HTTP error; `null` when it only appears inside a RunResult. */
  readonly http: number | null;
  readonly scope: ErrorScope;
  /** One line for docs/errors.md. */
  readonly meaning: string;
}

/** Every error code the service itself produces. Tools may add codes of their own (see docs/errors.md). */
export const ERROR_CODES = {
  // Requests
  INVALID_JSON: { http: 400, scope: "http", meaning: "The request body is not valid JSON." },
  INVALID_REQUEST: {
    http: 400,
    scope: "http",
    meaning: "The request does not match its JSON Schema (wrong type, missing or unknown field).",
  },
  UNSUPPORTED_MEDIA_TYPE: {
    http: 415,
    scope: "http",
    meaning: "The request body has a content type other than application/json.",
  },
  PAYLOAD_TOO_LARGE: {
    http: 413,
    scope: "http",
    meaning: "The request body is larger than the server's body limit.",
  },
  NOT_FOUND: { http: 404, scope: "http", meaning: "No route matches the method and path." },
  UNAUTHORIZED: {
    http: 401,
    scope: "http",
    meaning: "A bearer token is configured and the request lacks it or carries a wrong one.",
  },
  FORBIDDEN: {
    http: 403,
    scope: "http",
    meaning:
      "The route needs the admin token (SANDBOX_ADMIN_TOKEN), or admin routes are disabled (none is set).",
  },
  INTERNAL_ERROR: {
    http: 500,
    scope: "http",
    meaning: "An unexpected host failure; the message carries no internals. Please report it.",
  },
  SERVICE_CLOSING: {
    http: 503,
    scope: "http",
    meaning: "The server is shutting down and takes no new work.",
  },
  RUNTIME_UNAVAILABLE: {
    http: 503,
    scope: "http",
    meaning: "The backend cannot start sessions on this host now; the message says why.",
  },
  // Sessions and runs
  INVALID_SESSION_ID: {
    http: 400,
    scope: "run",
    meaning: "A session id does not match ^[a-zA-Z0-9_-]{1,64}$.",
  },
  INVALID_RUN_ID: {
    http: 400,
    scope: "run",
    meaning: "A run id does not match ^[a-zA-Z0-9_-]{1,64}$.",
  },
  RUN_ID_IN_USE: {
    http: 409,
    scope: "run",
    meaning: "A run with the client-chosen run_id is still known to the server.",
  },
  SESSION_NOT_FOUND: { http: 404, scope: "http", meaning: "No session has this id." },
  SESSION_EXISTS: {
    http: 409,
    scope: "http",
    meaning: "A session with this id already exists (explicit create).",
  },
  RUN_NOT_FOUND: {
    http: 404,
    scope: "http",
    meaning: "No run with this id is running or remembered.",
  },
  SESSION_BUSY: {
    http: 429,
    scope: "http",
    meaning: "The session's queue of waiting runs is full; retry after the current run ends.",
  },
  SESSION_LIMIT_REACHED: {
    http: 429,
    scope: "http",
    meaning:
      "The server holds its maximum number of sessions; destroy one or wait for idle expiry.",
  },
  LIMIT_EXCEEDS_CEILING: {
    http: 400,
    scope: "run",
    meaning: "A requested limit is above the server's ceiling for it; the message names the limit.",
  },
  UNSUPPORTED_LANGUAGE: {
    http: 400,
    scope: "run",
    meaning: "No registered backend runs this language.",
  },
  UNKNOWN_RUNTIME: {
    http: 400,
    scope: "run",
    meaning: "The requested backend is not registered, or does not run the requested language.",
  },
  LANGUAGE_MISMATCH: {
    http: 400,
    scope: "run",
    meaning:
      "The run's language cannot run in the session (e.g. python code in a JavaScript session).",
  },
  INVALID_INPUT: {
    http: 400,
    scope: "run",
    meaning:
      "An input cannot be bound as a global (a read-only global of the engine has its name).",
  },
  APPROVAL_NOT_FOUND: {
    http: 404,
    scope: "http",
    meaning: "No approval has this id (decided ones are kept for a while only).",
  },
  APPROVAL_ALREADY_DECIDED: {
    http: 409,
    scope: "http",
    meaning: "The approval was already approved, denied, expired or cancelled.",
  },
  CAPABILITY_NOT_FOUND: { http: 404, scope: "http", meaning: "No tool has this name." },
  CAPABILITY_EXISTS: {
    http: 409,
    scope: "http",
    meaning:
      "A tool the server itself provides (from configuration) has this name: a remote registration cannot replace it, nor DELETE remove it.",
  },
  // Guest code
  SYNTAX_ERROR: {
    http: null,
    scope: "run",
    meaning:
      "The code does not parse (or its types do not strip); the span points at the user's line.",
  },
  TYPE_ERROR: {
    http: null,
    scope: "run",
    meaning:
      "validate_only of TypeScript: the code does not type-check against the tools' stubs; each error is a diagnostic with a span.",
  },
  UNSUPPORTED_SYNTAX: {
    http: null,
    scope: "run",
    meaning: "The code uses syntax this backend cannot run (e.g. TypeScript decorators metadata).",
  },
  RUNTIME_ERROR: {
    http: null,
    scope: "run",
    meaning:
      "The code threw and did not catch; the message and span name the error, stderr has the stack.",
  },
  CPU_TIME_LIMIT: {
    http: null,
    scope: "run",
    meaning: "The run spent more than cpu_ms of CPU time executing guest code.",
  },
  WALL_TIME_LIMIT: {
    http: null,
    scope: "run",
    meaning: "The run took longer than wall_ms (or timeout_ms) of wall-clock time.",
  },
  MEMORY_LIMIT: {
    http: null,
    scope: "run",
    meaning: "The run tried to use more than memory_mb; guest code cannot catch this.",
  },
  STACK_LIMIT: {
    http: null,
    scope: "run",
    meaning: "The run nested calls deeper than max_stack_depth allows.",
  },
  EXTERNAL_CALL_LIMIT: {
    http: null,
    scope: "call",
    meaning:
      "The run made more tool calls than max_external_calls; the call is denied and the run ends.",
  },
  RUN_CANCELLED: {
    http: null,
    scope: "run",
    meaning:
      "The run was cancelled by its run id or its session was destroyed (in a call record: the run ended during the call).",
  },
  APPROVAL_REQUIRED: {
    http: null,
    scope: "diagnostic",
    meaning:
      "Info: the run waits (status waiting_for_approval) for a person to decide on a tool call; the message names the approval id.",
  },
  ENGINE_CRASHED: {
    http: null,
    scope: "run",
    meaning: "The engine process or thread under the run died; the session was reset.",
  },
  SESSION_RESET: {
    http: null,
    scope: "diagnostic",
    meaning:
      "Info: the session's state was discarded after this run (memory exhausted or engine crash).",
  },
  SESSION_RESTORED: {
    http: null,
    scope: "diagnostic",
    meaning:
      "Info: the session's engine worker had stopped under another session; its state was rebuilt from its journal before this run, no tool called again.",
  },
  TYPECHECK_UNAVAILABLE: {
    http: null,
    scope: "diagnostic",
    meaning:
      "Warning: validate_only could not type-check (the checker failed or timed out); syntax was checked.",
  },
  OUTPUT_TRUNCATED: {
    http: null,
    scope: "diagnostic",
    meaning: "Warning: stdout or stderr passed max_stdout_bytes and was cut; the run went on.",
  },
  RESULT_NOT_JSON: {
    http: null,
    scope: "diagnostic",
    meaning: "Warning: part of the result could not be held by JSON and was given as a string.",
  },
  // Tool calls (ExternalCallRecord.error, and the error raised in guest code)
  UNKNOWN_TOOL: { http: null, scope: "call", meaning: "No tool with this name is registered." },
  SIDE_EFFECT_DENIED: {
    http: null,
    scope: "call",
    meaning:
      "The tool's side effect is not allowed for this session or server; an uncaught one ends the run permission_denied.",
  },
  APPROVAL_DENIED: {
    http: null,
    scope: "call",
    meaning:
      "A person or the tool's approval rule denied the call; an uncaught one ends the run permission_denied.",
  },
  APPROVAL_EXPIRED: {
    http: null,
    scope: "call",
    meaning: "No one decided on the call before its approval expired; it was denied.",
  },
  RATE_LIMITED: {
    http: null,
    scope: "call",
    meaning:
      "The tool's rate_per_min is spent (across all sessions); the message says when to retry.",
  },
  CONCURRENCY_LIMIT: {
    http: null,
    scope: "call",
    meaning:
      "The tool already runs its concurrency of calls and none finished within the call's timeout.",
  },
  REMOTE_TOOL_FAILED: {
    http: null,
    scope: "call",
    meaning: "A remote tool's endpoint could not be reached or answered an HTTP error.",
  },
  INVALID_ARGUMENTS: {
    http: null,
    scope: "call",
    meaning: "The call's arguments are not JSON or do not match the tool's input_schema.",
  },
  REQUEST_TOO_LARGE: {
    http: null,
    scope: "call",
    meaning:
      "The call's JSON (name, args, kwargs) is larger than the tool's max_request_bytes; it is denied.",
  },
  RESPONSE_TOO_LARGE: {
    http: null,
    scope: "call",
    meaning:
      "The tool's answer is larger than its max_response_bytes; the guest gets this error instead.",
  },
  TOOL_TIMEOUT: {
    http: null,
    scope: "call",
    meaning: "The tool did not answer within its timeout_ms (or the run's remaining wall time).",
  },
  TOOL_ERROR: {
    http: null,
    scope: "call",
    meaning: "The tool failed without a code of its own; the message is the tool's.",
  },
  INVALID_TOOL_OUTPUT: {
    http: null,
    scope: "call",
    meaning: "The tool returned something that is not JSON or does not match its output_schema.",
  },
  // Workspaces (files tools, runner file routes)
  WORKSPACE_PATH_INVALID: {
    http: 400,
    scope: "call",
    meaning:
      "A workspace path is malformed, leaves the workspace (..), or names a directory where a file is needed (or the reverse).",
  },
  FILE_NOT_FOUND: {
    http: 404,
    scope: "call",
    meaning: "No file (or directory) at that workspace path.",
  },
  WORKSPACE_READ_ONLY: {
    http: 409,
    scope: "call",
    meaning: "The file is read-only (a manifest entry with writable: false).",
  },
  WORKSPACE_QUOTA_EXCEEDED: {
    http: 413,
    scope: "call",
    meaning: "The write would pass the workspace's quota of files, bytes, or bytes per file.",
  },
  // Registry
  INVALID_TOOL_NAME: {
    http: 400,
    scope: "http",
    meaning: "A capability name is not a Python identifier.",
  },
  INVALID_CAPABILITY: {
    http: 400,
    scope: "http",
    meaning: "A capability definition is malformed (schema does not compile, bad limits).",
  },
  // Runner sessions and processes (seeds 000, 001, 003)
  INVALID_IDENTIFIER: {
    http: 400,
    scope: "http",
    meaning:
      "An identifier is empty, longer than 120 bytes, or has characters other than ASCII letters, digits, '-', '_' and ':' (seed 001).",
  },
  PROCESS_NOT_FOUND: {
    http: 404,
    scope: "http",
    meaning: "No process with this id is registered (finished ones are kept for a while only).",
  },
  PROCESS_EXISTS: {
    http: 409,
    scope: "http",
    meaning:
      "A process with this id is still running (a runner command_id in use); a finished one is replaced.",
  },
  RUNNER_UNSUPPORTED: {
    http: 501,
    scope: "http",
    meaning:
      "The runner provider does not support the operation (e.g. port preview, or artifact export on a provider without it).",
  },
  // Snapshots
  SNAPSHOT_NOT_SUPPORTED: {
    http: 501,
    scope: "http",
    meaning:
      "The session cannot be snapshotted: its backend supports neither a journal replay nor an image.",
  },
  SNAPSHOT_NOT_FOUND: {
    http: 404,
    scope: "http",
    meaning: "No snapshot with this id is in the store.",
  },
  SNAPSHOT_INVALID: {
    http: 400,
    scope: "http",
    meaning:
      "The bytes are not a snapshot (no SANDSNAP magic) or its header or payload cannot be read.",
  },
  SNAPSHOT_TRUNCATED: {
    http: 400,
    scope: "http",
    meaning: "The snapshot's bytes end before its declared lengths.",
  },
  SNAPSHOT_TAMPERED: {
    http: 400,
    scope: "http",
    meaning: "The snapshot's bytes do not match its SHA3-256 digest: altered or corrupted.",
  },
  SNAPSHOT_SIGNATURE_INVALID: {
    http: 400,
    scope: "http",
    meaning:
      "The snapshot's HMAC does not verify with this server's SANDBOX_SNAPSHOT_KEY (signed with another key).",
  },
  SNAPSHOT_UNSIGNED: {
    http: 400,
    scope: "http",
    meaning:
      "The snapshot is unsigned and this server restores unsigned snapshots only with SANDBOX_ALLOW_UNSIGNED_SNAPSHOTS=1.",
  },
  SNAPSHOT_VERSION_UNSUPPORTED: {
    http: 400,
    scope: "http",
    meaning: "The snapshot's format version is not this server's SNAPSHOT_VERSION.",
  },
  SNAPSHOT_INCOMPATIBLE: {
    http: 409,
    scope: "http",
    meaning: "No backend here restores this snapshot's language or state kind.",
  },
  SNAPSHOT_BUILD_MISMATCH: {
    http: 409,
    scope: "http",
    meaning:
      "The snapshot holds only an image, taken on another engine build than this server's; images restore only into the same build.",
  },
  SNAPSHOT_DIVERGED: {
    http: 409,
    scope: "http",
    meaning:
      "Replaying the journal went another way than the original (a tool call the journal lacks, or another result); nothing was restored.",
  },
  SNAPSHOT_TOO_LARGE: {
    http: 413,
    scope: "http",
    meaning:
      "The snapshot is larger than the server's maxSnapshotBytes, or its payload inflates past it.",
  },
  ARTIFACT_NOT_FOUND: {
    http: 404,
    scope: "http",
    meaning: "No artifact has this id (or it expired).",
  },
  ARTIFACT_STORE_FULL: {
    http: 507,
    scope: "http",
    meaning: "The artifact store holds its maximum bytes; wait for old artifacts to expire.",
  },
  INVALID_DESTINATION: {
    http: 400,
    scope: "http",
    meaning:
      "A runner destination this provider cannot serve: another provider, a bad config, a mount, or a manifest source outside the configured host roots.",
  },
  SNAPSHOT_IN_USE: {
    http: 409,
    scope: "http",
    meaning:
      "The snapshot holds a hibernated session; destroy the session (or wake it with a run) first.",
  },
  SNAPSHOT_STORE_FULL: {
    http: 507,
    scope: "http",
    meaning:
      "The snapshot store holds its maximum bytes; delete snapshots or wait for their expiry.",
  },
} as const satisfies Record<string, ErrorCodeInfo>;

/** A code of {@link ERROR_CODES}. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** Whether `code` is one of the service's own codes. */
export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_CODES, code);
}

/** Optional parts of a {@link SandboxError}. */
export interface SandboxErrorOptions {
  hint?: string;
  span?: Span;
  cause?: unknown;
}

/**
 * The error the host throws for every failure it reports to a caller. Branch on `code`,
 * never on the message. Guest failures are not thrown: they come back as a RunResult.
 */
export class SandboxError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | null;
  readonly span: Span | null;

  constructor(code: ErrorCode, message: string, options: SandboxErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "SandboxError";
    this.code = code;
    this.hint = options.hint ?? null;
    this.span = options.span ?? null;
  }

  /** HTTP status for this code; 400 for codes that normally live only in a RunResult. */
  get httpStatus(): number {
    return ERROR_CODES[this.code].http ?? 400;
  }

  /** The seed's `ErrorObject` for this error. */
  toErrorObject(): ErrorObject {
    return errorObject(this.code, this.message, { hint: this.hint, span: this.span });
  }
}

/** Whether `value` is a {@link SandboxError} (optionally with the given code). */
export function isSandboxError(value: unknown, code?: ErrorCode): value is SandboxError {
  return value instanceof SandboxError && (code === undefined || value.code === code);
}

/** Builds an `ErrorObject` (seed: `ErrorObject::new(...).with_hint(...).with_span(...)`). */
export function errorObject(
  code: string,
  message: string,
  extra: { hint?: string | null; span?: Span | null } = {},
): ErrorObject {
  return { code, message, hint: extra.hint ?? null, span: extra.span ?? null };
}

/** The HTTP envelope of seed 002: `{"error": {"code": "lower_snake", "message"}}`. */
export interface ErrorEnvelope {
  error: { code: string; message: string; hint?: string };
}

/** Builds the HTTP envelope for a code (written lower_snake). */
export function errorEnvelope(code: string, message: string, hint?: string | null): ErrorEnvelope {
  const body: ErrorEnvelope = { error: { code: code.toLowerCase(), message } };
  if (hint) body.error.hint = hint;
  return body;
}
