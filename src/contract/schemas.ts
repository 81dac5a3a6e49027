/**
 * JSON Schemas (draft 2020-12 subset that ajv 8 and fastify understand) of every request
 * body and response of the HTTP API. The same objects drive ajv validation, fastify's
 * response serialization and the OpenAPI document, so they cannot drift apart.
 *
 * Request bodies refuse unknown fields (`additionalProperties: false`); responses declare
 * every field the seed's types have plus our optional extensions.
 *
 * @module
 */
import { ID_PATTERN_SOURCE } from "./ids.ts";
import { LANGUAGES, RUN_STATUSES, SIDE_EFFECTS } from "./types.ts";

const U32_MAX = 4_294_967_295;
const u32 = (minimum = 0) => ({ type: "integer", minimum, maximum: U32_MAX }) as const;
const nullable = <T extends object>(schema: T) => ({ anyOf: [schema, { type: "null" }] }) as const;

/** Schema of a (possibly partial) `SessionLimits` object in a request. */
export const sessionLimitsInputSchema = {
  $id: "SessionLimitsInput",
  type: "object",
  description: "Limits; omitted fields come from the session (or the server defaults).",
  additionalProperties: false,
  properties: {
    memory_mb: { ...u32(1), description: "MiB of engine memory." },
    cpu_ms: { ...u32(1), description: "CPU milliseconds per run." },
    wall_ms: { ...u32(1), description: "Wall-clock milliseconds per run." },
    max_stdout_bytes: { ...u32(0), description: "Bytes kept of stdout and of stderr." },
    max_external_calls: { ...u32(0), description: "Tool calls per run." },
    max_stack_depth: {
      type: "integer",
      minimum: 1,
      maximum: 65_535,
      description: "Nested call frames.",
    },
  },
} as const;

/** Schema of a complete `SessionLimits` object in a response. */
export const sessionLimitsSchema = {
  $id: "SessionLimits",
  type: "object",
  required: [
    "memory_mb",
    "cpu_ms",
    "wall_ms",
    "max_stdout_bytes",
    "max_external_calls",
    "max_stack_depth",
  ],
  properties: sessionLimitsInputSchema.properties,
} as const;

const languageSchema = { type: "string", enum: [...LANGUAGES] } as const;
const idSchema = { type: "string", pattern: ID_PATTERN_SOURCE } as const;

/**
 * Schema of `RunRequest` (seed 004). The session id's pattern is checked by the session
 * manager, not here, so a bad id is answered as the seed does: a RunResult with
 * `validation_error` / `INVALID_SESSION_ID`.
 */
export const runRequestSchema = {
  $id: "RunRequest",
  type: "object",
  additionalProperties: false,
  required: ["code"],
  properties: {
    session_id: { type: "string", description: 'Session to run in; default "default".' },
    language: { ...languageSchema, description: "Default: the session's language, else python." },
    code: { type: "string", description: "Source code of the cell." },
    inputs: { type: "object", description: "Values bound as globals before the code runs." },
    timeout_ms: nullable(u32(1)),
    limits: nullable({ $ref: "SessionLimitsInput#" }),
    return_snapshot: { type: "boolean" },
    validate_only: { type: "boolean" },
    run_id: { ...idSchema, description: "Extension: client-chosen run id, for cancel." },
    runtime: { type: "string", description: "Extension: backend for a new session." },
  },
} as const;

/** Schema of `POST /v1/sessions`. */
export const createSessionSchema = {
  $id: "CreateSessionRequest",
  type: "object",
  additionalProperties: false,
  properties: {
    session_id: { type: "string", description: "Default: a generated id." },
    language: languageSchema,
    limits: nullable({ $ref: "SessionLimitsInput#" }),
    runtime: { type: "string", description: "Backend id; default: the server's for the language." },
    allowed_side_effects: {
      type: "array",
      uniqueItems: true,
      items: { type: "string", enum: [...SIDE_EFFECTS] },
      description: "Side-effect classes the session's code may use (narrowed by the server's).",
    },
  },
} as const;

/** Schema of an approval (`/v1/approvals`). */
export const approvalSchema = {
  $id: "Approval",
  type: "object",
  required: [
    "approval_id",
    "run_id",
    "session_id",
    "name",
    "args",
    "kwargs",
    "request_digest",
    "side_effect",
    "status",
    "reason",
    "created_at",
    "expires_at",
    "decided_at",
  ],
  properties: {
    approval_id: { type: "string" },
    run_id: { type: "string" },
    session_id: { type: "string" },
    name: { type: "string" },
    args: { type: "array" },
    kwargs: { type: "object" },
    request_digest: { type: "string" },
    side_effect: { type: "string", enum: [...SIDE_EFFECTS] },
    status: { type: "string", enum: ["pending", "approved", "denied", "expired", "cancelled"] },
    reason: { type: ["string", "null"] },
    created_at: { type: "integer" },
    expires_at: { type: "integer" },
    decided_at: { type: ["integer", "null"] },
  },
} as const;

/** Schema of `POST /v1/approvals/{id}`. */
export const approvalDecisionSchema = {
  $id: "ApprovalDecision",
  type: "object",
  additionalProperties: false,
  required: ["decision"],
  properties: {
    decision: { type: "string", enum: ["approve", "deny"] },
    reason: { type: "string", maxLength: 2_000 },
  },
} as const;

/** Schema of `POST /v1/capabilities`: a Capability (partial; seed defaults fill it) and its endpoint. */
export const remoteCapabilitySchema = {
  $id: "RemoteCapabilityRequest",
  type: "object",
  additionalProperties: false,
  required: ["name", "description", "endpoint"],
  properties: {
    name: { type: "string", maxLength: 128 },
    description: { type: "string", maxLength: 4_096 },
    input_schema: {},
    output_schema: {},
    kwargs_schema: {},
    side_effect: { type: "string", enum: [...SIDE_EFFECTS] },
    limits: {
      type: "object",
      additionalProperties: false,
      properties: {
        timeout_ms: u32(1),
        max_request_bytes: u32(1),
        max_response_bytes: u32(1),
        concurrency: u32(1),
        rate_per_min: nullable(u32(1)),
      },
    },
    approval_policy: {
      anyOf: [
        { type: "string", enum: ["none", "manual"] },
        {
          type: "object",
          additionalProperties: false,
          required: ["auto"],
          properties: {
            auto: {
              type: "object",
              additionalProperties: false,
              required: ["rule"],
              properties: { rule: { type: "string", maxLength: 4_096 } },
            },
          },
        },
      ],
    },
    idempotent: { type: "boolean" },
    endpoint: {
      type: "object",
      additionalProperties: false,
      required: ["url"],
      properties: {
        url: { type: "string", pattern: "^https?://", maxLength: 2_048 },
        headers: { type: "object", additionalProperties: { type: "string" } },
      },
    },
  },
} as const;

const spanSchema = {
  type: "object",
  required: ["line", "column", "end_line", "end_column"],
  properties: {
    line: { type: "integer" },
    column: { type: "integer" },
    end_line: { type: ["integer", "null"] },
    end_column: { type: ["integer", "null"] },
  },
} as const;

const errorObjectSchema = {
  type: "object",
  required: ["code", "message", "hint", "span"],
  properties: {
    code: { type: "string" },
    message: { type: "string" },
    hint: { type: ["string", "null"] },
    span: nullable(spanSchema),
  },
} as const;

/** Schema of `RunResult` (seed 004) with our optional extensions. */
export const runResultSchema = {
  $id: "RunResult",
  type: "object",
  required: [
    "status",
    "result",
    "stdout",
    "stderr",
    "diagnostics",
    "external_calls",
    "snapshot_id",
    "metrics",
    "error",
  ],
  properties: {
    status: { type: "string", enum: [...RUN_STATUSES] },
    result: { description: "Value of the last expression statement, as JSON, or null." },
    stdout: { type: "string" },
    stderr: { type: "string" },
    diagnostics: {
      type: "array",
      items: {
        type: "object",
        required: ["severity", "code", "message", "hint", "span"],
        properties: {
          severity: { type: "string", enum: ["error", "warning", "info"] },
          code: { type: "string" },
          message: { type: "string" },
          hint: { type: ["string", "null"] },
          span: nullable(spanSchema),
        },
      },
    },
    external_calls: {
      type: "array",
      items: {
        type: "object",
        required: [
          "name",
          "side_effect",
          "duration_ms",
          "status",
          "request_digest",
          "response_digest",
          "error",
        ],
        properties: {
          name: { type: "string" },
          side_effect: { type: "string", enum: [...SIDE_EFFECTS] },
          duration_ms: { type: "integer" },
          status: {
            type: "string",
            enum: ["ok", "error", "timeout", "denied", "approval_pending"],
          },
          request_digest: { type: "string" },
          response_digest: { type: ["string", "null"] },
          error: nullable(errorObjectSchema),
        },
      },
    },
    snapshot_id: { type: ["string", "null"] },
    metrics: {
      type: "object",
      required: ["duration_ms", "memory_peak_bytes", "instructions", "external_calls_count"],
      properties: {
        duration_ms: { type: "integer" },
        memory_peak_bytes: { type: "integer" },
        instructions: { type: "integer" },
        external_calls_count: { type: "integer" },
        cpu_ms: { type: "integer" },
        queue_ms: { type: "integer" },
      },
    },
    error: nullable(errorObjectSchema),
    run_id: { type: "string" },
    session_id: { type: "string" },
    approvals: { type: "array", items: { $ref: "Approval#" } },
  },
} as const;

/** Schema of a session as the API returns it: `SessionMeta` (seed 004) plus extensions. */
export const sessionInfoSchema = {
  $id: "SessionInfo",
  type: "object",
  required: ["id", "created_at", "last_used_at", "language", "limits", "snapshot_version"],
  properties: {
    id: { type: "string" },
    created_at: { type: "integer", description: "Unix epoch ms." },
    last_used_at: { type: "integer", description: "Unix epoch ms." },
    language: languageSchema,
    limits: { $ref: "SessionLimits#" },
    snapshot_version: { type: "integer" },
    runtime: { type: "string", description: "Extension: backend id." },
    state: {
      type: "string",
      enum: ["idle", "running", "hibernated"],
      description: "Extension. hibernated: kept in the snapshot store; its next run restores it.",
    },
    queued_runs: {
      type: "integer",
      description: "Extension: runs waiting behind the current one.",
    },
    run_count: { type: "integer", description: "Extension: runs finished in this session." },
    expires_at: { type: "integer", description: "Extension: Unix epoch ms of idle expiry." },
    allowed_side_effects: {
      type: "array",
      items: { type: "string", enum: [...SIDE_EFFECTS] },
      description: "Extension: side-effect classes the session's code may use.",
    },
  },
} as const;

/** Schema of a `Capability` (seed 004) in responses. */
export const capabilitySchema = {
  $id: "Capability",
  type: "object",
  required: [
    "name",
    "description",
    "input_schema",
    "output_schema",
    "side_effect",
    "limits",
    "approval_policy",
    "idempotent",
  ],
  properties: {
    name: { type: "string" },
    description: { type: "string" },
    input_schema: {},
    output_schema: {},
    kwargs_schema: {},
    side_effect: { type: "string", enum: [...SIDE_EFFECTS] },
    limits: {
      type: "object",
      required: [
        "timeout_ms",
        "max_request_bytes",
        "max_response_bytes",
        "concurrency",
        "rate_per_min",
      ],
      properties: {
        timeout_ms: { type: "integer" },
        max_request_bytes: { type: "integer" },
        max_response_bytes: { type: "integer" },
        concurrency: { type: "integer" },
        rate_per_min: { type: ["integer", "null"] },
      },
    },
    approval_policy: {
      description: 'Externally tagged: "none", "manual" or {"auto": {"rule": "..."}}.',
    },
    idempotent: { type: "boolean" },
  },
} as const;

/** Schema of seed 002's error envelope. */
export const errorEnvelopeSchema = {
  $id: "ErrorEnvelope",
  type: "object",
  required: ["error"],
  properties: {
    error: {
      type: "object",
      required: ["code", "message"],
      properties: {
        code: { type: "string", description: "lower_snake code listed in docs/errors.md." },
        message: { type: "string" },
        hint: { type: "string" },
      },
    },
  },
} as const;

const snapshotIdSchema = {
  type: "string",
  pattern: "^[0-9a-f]{64}$",
  description: "SHA3-256 of the snapshot's bytes (hex).",
} as const;

/** Schema of a snapshot's description (`POST /v1/sessions/{id}/snapshot`, uploads). */
export const snapshotInfoSchema = {
  $id: "SnapshotInfo",
  type: "object",
  required: [
    "snapshot_id",
    "session_id",
    "bytes",
    "backend",
    "engine",
    "language",
    "kinds",
    "created_at",
    "journal_runs",
  ],
  properties: {
    snapshot_id: snapshotIdSchema,
    session_id: { type: "string", description: "The session it was taken of." },
    bytes: { type: "integer", description: "Size of the snapshot's bytes." },
    backend: { type: "string" },
    engine: { type: "string", description: "Exact engine build it was taken on." },
    language: languageSchema,
    kinds: {
      type: "array",
      items: { type: "string", enum: ["journal", "image"] },
      description: "State it holds: a journal (portable) and/or an image (same build only).",
    },
    created_at: { type: "integer", description: "Unix epoch ms." },
    journal_runs: { type: "integer", description: "Runs in its journal." },
  },
} as const;

/** Schema of `POST /v1/sessions/restore` with a JSON body. */
export const restoreRequestSchema = {
  $id: "RestoreRequest",
  type: "object",
  additionalProperties: false,
  properties: {
    snapshot_id: { ...snapshotIdSchema, description: "A stored snapshot (or give `snapshot`)." },
    snapshot: {
      type: "string",
      contentEncoding: "base64",
      description: "The snapshot's bytes, base64 (or give `snapshot_id`).",
    },
    session_id: {
      type: "string",
      description: "Id of the restored session; default the original's.",
    },
    runtime: { type: "string", description: "Backend to restore into; default the snapshot's." },
  },
} as const;

/** Schema of what a restore answers. */
export const restoreInfoSchema = {
  $id: "RestoreInfo",
  type: "object",
  required: [
    "session",
    "snapshot_id",
    "restored_from",
    "runtime",
    "replayed_runs",
    "files",
    "duration_ms",
  ],
  properties: {
    session: { $ref: "SessionInfo#" },
    snapshot_id: snapshotIdSchema,
    restored_from: {
      type: "string",
      enum: ["journal", "image"],
      description: "image: the backend loaded it; journal: its runs were replayed.",
    },
    runtime: { type: "string" },
    replayed_runs: { type: "integer" },
    files: { type: "integer", description: "Workspace files restored." },
    duration_ms: { type: "number" },
  },
} as const;

/** Every schema with an `$id`, to register with ajv/fastify before routes refer to them. */
export const SHARED_SCHEMAS = [
  approvalSchema,
  approvalDecisionSchema,
  remoteCapabilitySchema,
  sessionLimitsInputSchema,
  sessionLimitsSchema,
  runRequestSchema,
  createSessionSchema,
  runResultSchema,
  sessionInfoSchema,
  capabilitySchema,
  errorEnvelopeSchema,
  snapshotInfoSchema,
  restoreRequestSchema,
  restoreInfoSchema,
] as const;
