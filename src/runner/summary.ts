/**
 * What a worker runtime's host registry shows of a runtime (seed 001, `hosts.rs`:
 * `RuntimeSummary` and the types in it), the identifier rules that registry applies, and the
 * summary the runtime itself answers on `GET /v1/runtime` (seed 002).
 *
 * Same JSON as the seed's serde types: snake_case fields as declared, unit enums as snake_case
 * strings, every field present.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { SandboxError } from "../errors.ts";

/** Longest identifier the registry accepts or makes, in bytes (seed: `MAX_IDENTIFIER_LEN`). */
export const MAX_IDENTIFIER_LEN = 120;
/** Hex digits of SHA-256 in a bounded identifier (seed: `ID_DIGEST_HEX_LEN`). */
export const ID_DIGEST_HEX_LEN = 16;
/** Diagnostics kept in one answer (seed: `MAX_DIAGNOSTICS`). */
export const MAX_DIAGNOSTICS = 16;

/** How bad a diagnostic is (seed: `DiagnosticSeverity`, snake_case). */
export type DiagnosticSeverity = "info" | "warning" | "error";

/** A note about a runtime or an operation, safe to show (seed: `RuntimeDiagnostic`). */
export interface RuntimeDiagnostic {
  /** lower_snake, e.g. `"remote_runtime_timeout"`. */
  code: string;
  severity: DiagnosticSeverity;
  /** Sanitized: no paths, endpoints, tokens or internal ids. */
  message: string;
}

/**
 * A diagnostic (seed: `RuntimeDiagnostic::new`): `severity` `"error"` or `"warning"` as given,
 * anything else is `"info"`.
 */
export function runtimeDiagnostic(
  code: string,
  severity: string,
  message: string,
): RuntimeDiagnostic {
  return {
    code,
    severity: severity === "error" || severity === "warning" ? severity : "info",
    message,
  };
}

/** The first {@link MAX_DIAGNOSTICS} diagnostics, as the seed's registry truncates them. */
export function boundDiagnostics(diagnostics: readonly RuntimeDiagnostic[]): RuntimeDiagnostic[] {
  return diagnostics.slice(0, MAX_DIAGNOSTICS);
}

/** How the registry reaches a runtime (seed: `RuntimeSourceKind`). */
export type RuntimeSourceKind = "embedded_worker_runtime" | "remote_http";
/** Whether a source is in use (seed: `RuntimeSourceStatus`). */
export type RuntimeSourceStatus = "active" | "reserved";
/**
 * Who owns the public ids (seed: `RuntimeIdentityAuthority`): ids are registry projections,
 * never raw socket addresses, session ids, credentials or paths.
 */
export type RuntimeIdentityAuthority = "runtime_registry_projection";

/** Where a runtime comes from (seed: `RuntimeSourceSummary`). */
export interface RuntimeSourceSummary {
  kind: RuntimeSourceKind;
  status: RuntimeSourceStatus;
  identity_authority: RuntimeIdentityAuthority;
  note: string;
}

/** The seed's four `RuntimeSourceSummary` constructors, with their notes word for word. Frozen. */
export const RUNTIME_SOURCES = Object.freeze({
  embeddedWorkerRuntime: Object.freeze<RuntimeSourceSummary>({
    kind: "embedded_worker_runtime",
    status: "active",
    identity_authority: "runtime_registry_projection",
    note: "backend-internal embedded worker-runtime Runtime exposed only through runtime_id plus worker_id projections",
  }),
  embeddedWorkerRuntimeReserved: Object.freeze<RuntimeSourceSummary>({
    kind: "embedded_worker_runtime",
    status: "reserved",
    identity_authority: "runtime_registry_projection",
    note: "reserved boundary for an embedded worker-runtime adapter; not connected by this fixture source",
  }),
  remoteHttp: Object.freeze<RuntimeSourceSummary>({
    kind: "remote_http",
    status: "active",
    identity_authority: "runtime_registry_projection",
    note: "backend-owned remote worker-runtime REST/WS client; endpoints and credentials remain backend-private",
  }),
  remoteHttpReserved: Object.freeze<RuntimeSourceSummary>({
    kind: "remote_http",
    status: "reserved",
    identity_authority: "runtime_registry_projection",
    note: "reserved boundary for a future remote Runtime adapter; no HTTP client or REST server is implemented here",
  }),
});

/** What a runtime (or a host of it) can do (seed: `RuntimeCapabilitySummary`). */
export interface RuntimeCapabilitySummary {
  can_list_hosts: boolean;
  can_list_workers: boolean;
  can_get_worker: boolean;
  can_spawn_worker: boolean;
  can_stop_worker: boolean;
  can_accept_input: boolean;
  has_workspace_fs: boolean;
  has_shell: boolean;
  has_git: boolean;
  supports_worktrees: boolean;
  supports_backend_internal_tools: boolean;
  /** E.g. `"backend_internal"`, `"remote_runtime_backend_private"`, `"none"`. */
  workspace_scope: string;
  /** Seed: `usize`. */
  max_workers: number;
  /** E.g. `"linux"` (Rust's `std::env::consts::OS`), `"remote"`. */
  os: string;
  /** E.g. `"x86_64"` (Rust's `std::env::consts::ARCH`), `"remote"`. */
  arch: string;
}

/** Seed: `HostCapabilitySummary = RuntimeCapabilitySummary`. */
export type HostCapabilitySummary = RuntimeCapabilitySummary;

/** One runtime as a host registry lists it (seed: `RuntimeSummary` of `hosts.rs`). */
export interface RuntimeSummary {
  runtime_id: string;
  label: string;
  /** E.g. `"embedded_worker_runtime"`, `"remote_worker_runtime"`. */
  kind: string;
  /** Free text in this type, e.g. `"running"`, `"stopped"`, `"unavailable"`. */
  status: string;
  source: RuntimeSourceSummary;
  host_ids: string[];
  capabilities: RuntimeCapabilitySummary;
  /** At most {@link MAX_DIAGNOSTICS}. */
  diagnostics: RuntimeDiagnostic[];
}

/** A bounded list with its diagnostics (seed: `RuntimeList<T>`). */
export interface RuntimeList<T> {
  items: T[];
  diagnostics: RuntimeDiagnostic[];
}

/**
 * Bounds of a runtime's list and stream answers (the `worker_runtime::management::RuntimeLimits`
 * seed 002 serves; defaults 256 and 256). Not in the seeds themselves: from the upstream
 * project's public source, the version whose `RuntimeOptions` matches seed 002's.
 */
export interface WorkerRuntimeLimits {
  max_transcript_projection_items: number;
  max_event_batch_items: number;
}

/**
 * The runtime's own summary that seed 002 answers on `GET /v1/runtime` inside
 * `{"runtime": ...}` (`worker_runtime::management::RuntimeSummary`), which seed 001's remote
 * client reads (`display_name`, `status`). Same provenance as {@link WorkerRuntimeLimits}.
 */
export interface WorkerRuntimeSummary {
  runtime_id: string;
  display_name: string | null;
  /** `RuntimeBackendKind`: `"memory"` (later versions add `"fs_store"`). */
  backend: string;
  /** `RuntimeStatus`: seed 001 maps it with `"running"` / `"stopped"` labels. */
  status: "running" | "stopped";
  worker_count: number;
  active_worker_count: number;
  stopped_worker_count: number;
  cancelled_worker_count: number;
  diagnostic_count: number;
  limits: WorkerRuntimeLimits;
}

/** Body of seed 002's `GET /v1/runtime` (seed: `RuntimeHttpSummaryResponse`). */
export interface RuntimeHttpSummaryResponse<T = WorkerRuntimeSummary> {
  runtime: T;
}

const IDENTIFIER = /^[A-Za-z0-9_:-]{1,120}$/;

/**
 * Whether `value` is an identifier seed 001's registry accepts (`validate_backend_identifier`):
 * 1 to {@link MAX_IDENTIFIER_LEN} bytes, each an ASCII letter or digit, `-`, `_` or `:`
 * (`"remote:primary"`, `"worker-remote-1"`).
 */
export function isValidIdentifier(value: unknown): value is string {
  return typeof value === "string" && IDENTIFIER.test(value);
}

/**
 * Returns `value` when it is a valid identifier ({@link isValidIdentifier}).
 * @param kind what the identifier is, for the message (`"runtime_id"`, `"worker_id"`, ...).
 * @throws SandboxError `INVALID_IDENTIFIER` naming the kind and (its first 120 characters, JSON
 *   quoted) the value, as the seed's `InvalidIdentifier { kind, value }` carries them.
 */
export function validateIdentifier(kind: string, value: unknown): string {
  if (isValidIdentifier(value)) return value;
  const shown =
    typeof value === "string"
      ? JSON.stringify([...value].slice(0, MAX_IDENTIFIER_LEN).join(""))
      : `(${value === null ? "null" : typeof value})`;
  throw new SandboxError(
    "INVALID_IDENTIFIER",
    `${kind} ${shown} is not a valid identifier: use 1 to ${MAX_IDENTIFIER_LEN} ASCII letters, digits, '-', '_' or ':'.`,
  );
}

/**
 * Seed 001's `sanitize_identifier_body`: each character becomes itself lower-cased if it is an
 * ASCII letter or digit, itself if `-` or `_`, else `-`; then `-` is trimmed from both ends.
 */
export function sanitizeIdentifierBody(value: string): string {
  let out = "";
  for (const char of value) {
    if (/^[A-Za-z0-9]$/.test(char)) out += char.toLowerCase();
    else if (char === "-" || char === "_") out += char;
    else out += "-";
  }
  return trimDashes(out);
}

function trimDashes(value: string): string {
  return value.replace(/^-+|-+$/g, "");
}

const utf8Length = (text: string) => Buffer.byteLength(text, "utf8");

/**
 * A stable identifier of at most {@link MAX_IDENTIFIER_LEN} bytes made from any string, as seed
 * 001's `bounded_backend_identifier` makes host ids (`"embedded-" + workspace_id`,
 * `"remote-" + runtime_id`): `prefix` + the sanitized value (`"id"` if nothing is left),
 * shortened to fit, + `-` + the first 16 hex digits of SHA-256 of the value.
 *
 * @example boundedIdentifier("remote-", "remote:primary") === "remote-remote-primary-3e64aea0035e79af"
 */
export function boundedIdentifier(prefix: string, value: string): string {
  const digest = createHash("sha256")
    .update(value, "utf8")
    .digest("hex")
    .slice(0, ID_DIGEST_HEX_LEN);
  let body = sanitizeIdentifierBody(value) || "id";
  const suffixLength = 1 + ID_DIGEST_HEX_LEN;
  const bodyBudget = Math.max(1, MAX_IDENTIFIER_LEN - utf8Length(prefix) - suffixLength);
  if (body.length > bodyBudget) body = trimDashes(body.slice(0, bodyBudget)) || "id";
  const id = `${prefix}${body}-${digest}`;
  if (utf8Length(id) <= MAX_IDENTIFIER_LEN) return id;
  // As the seed: the prefix cut by characters, not bytes.
  return `${[...prefix].slice(0, MAX_IDENTIFIER_LEN - suffixLength).join("")}-${digest}`;
}

/**
 * A label safe to show (seed 001's `safe_display_hint`): control characters (Unicode Cc), `/`
 * and `\` removed, at most 80 characters kept.
 */
export function safeDisplayHint(value: string): string {
  return [...value]
    .filter((char) => !/^\p{Cc}$/u.test(char) && char !== "/" && char !== "\\")
    .slice(0, 80)
    .join("");
}

const diagnosticSchema = {
  type: "object",
  required: ["code", "severity", "message"],
  properties: {
    code: { type: "string" },
    severity: { type: "string", enum: ["info", "warning", "error"] },
    message: { type: "string" },
  },
} as const;

/** Response schema of a {@link RuntimeSummary} (for fastify's serializer and the OpenAPI document). */
export const runtimeSummarySchema = {
  $id: "RuntimeSummary",
  type: "object",
  required: [
    "runtime_id",
    "label",
    "kind",
    "status",
    "source",
    "host_ids",
    "capabilities",
    "diagnostics",
  ],
  properties: {
    runtime_id: { type: "string" },
    label: { type: "string" },
    kind: { type: "string" },
    status: { type: "string" },
    source: {
      type: "object",
      required: ["kind", "status", "identity_authority", "note"],
      properties: {
        kind: { type: "string", enum: ["embedded_worker_runtime", "remote_http"] },
        status: { type: "string", enum: ["active", "reserved"] },
        identity_authority: { type: "string", enum: ["runtime_registry_projection"] },
        note: { type: "string" },
      },
    },
    host_ids: { type: "array", items: { type: "string" } },
    capabilities: {
      type: "object",
      required: [
        "can_list_hosts",
        "can_list_workers",
        "can_get_worker",
        "can_spawn_worker",
        "can_stop_worker",
        "can_accept_input",
        "has_workspace_fs",
        "has_shell",
        "has_git",
        "supports_worktrees",
        "supports_backend_internal_tools",
        "workspace_scope",
        "max_workers",
        "os",
        "arch",
      ],
      properties: {
        can_list_hosts: { type: "boolean" },
        can_list_workers: { type: "boolean" },
        can_get_worker: { type: "boolean" },
        can_spawn_worker: { type: "boolean" },
        can_stop_worker: { type: "boolean" },
        can_accept_input: { type: "boolean" },
        has_workspace_fs: { type: "boolean" },
        has_shell: { type: "boolean" },
        has_git: { type: "boolean" },
        supports_worktrees: { type: "boolean" },
        supports_backend_internal_tools: { type: "boolean" },
        workspace_scope: { type: "string" },
        max_workers: { type: "integer", minimum: 0 },
        os: { type: "string" },
        arch: { type: "string" },
      },
    },
    diagnostics: { type: "array", maxItems: MAX_DIAGNOSTICS, items: diagnosticSchema },
  },
} as const;
