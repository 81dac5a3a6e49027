/**
 * RunResults the session manager makes itself, and the parts of a run's RunResult it decides
 * after the backend has answered: refusals (a run that never ran), host outcomes (a run the
 * host ended), the `waiting_for_approval` answer, which error a run really ended with, and how
 * snapshots are described.
 *
 * @module
 */
import type { Diagnostic, ErrorObject, RunResult, RunStatus } from "../contract/types.ts";
import type { RuntimeRunOutcome } from "../runtime/interface.ts";
import { errorDiagnostic } from "../runtime/outcomes.ts";
import type { SnapshotHeader } from "../snapshot/envelope.ts";
import type { ReadSnapshot, SealedSnapshot } from "../snapshot/snapshots.ts";
import type { Approval } from "../tools/approvals.ts";
import type { ToolGateway } from "../tools/gateway.ts";
import type { RunState } from "./state.ts";
import type { SnapshotInfo } from "./types.ts";

/**
 * The RunResult of a run that did not run: refused (`validation_error`, seed 004) or
 * cancelled before it started (`status` `cancelled`).
 */
export function refusal(
  runId: string,
  sessionId: string,
  error: ErrorObject,
  status: RunStatus = "validation_error",
): RunResult {
  return {
    status,
    result: null,
    stdout: "",
    stderr: "",
    diagnostics: [errorDiagnostic(error)],
    external_calls: [],
    snapshot_id: null,
    metrics: { duration_ms: 0, memory_peak_bytes: 0, instructions: 0, external_calls_count: 0 },
    error,
    run_id: runId,
    session_id: sessionId,
  };
}

/** The outcome of a run the host ended without the backend (cancelled before it ran, or lost). */
export function hostOutcome(status: RunStatus, error: ErrorObject): RuntimeRunOutcome {
  return {
    status,
    result: null,
    stdout: "",
    stderr: "",
    diagnostics: [errorDiagnostic(error)],
    error,
    memoryPeakBytes: 0,
    instructions: 0,
    cpuMs: 0,
    sessionReset: false,
  };
}

/**
 * The RunResult answered while a run waits for approvals (the run goes on): one `info`
 * diagnostic per approval in `pending`, saying how to decide it.
 */
export function waitingResult(run: RunState, pending: Approval[]): RunResult {
  const diagnostics: Diagnostic[] = pending.map((approval) => ({
    severity: "info",
    code: "APPROVAL_REQUIRED",
    message: `The call to '${approval.name}' waits for approval ${approval.approval_id} (${approval.reason ?? "manual policy"}).`,
    hint: `POST /v1/approvals/${approval.approval_id} with {"decision": "approve"} or {"decision": "deny"}; then GET /v1/runs/${run.id}?wait_ms=30000 for the final result.`,
    span: null,
  }));
  const records = run.gateway ? run.gateway.records.map((record) => ({ ...record })) : [];
  return {
    status: "waiting_for_approval",
    result: null,
    stdout: "",
    stderr: "",
    diagnostics,
    external_calls: records,
    snapshot_id: null,
    metrics: {
      duration_ms: 0,
      memory_peak_bytes: 0,
      instructions: 0,
      external_calls_count: records.length,
    },
    error: null,
    run_id: run.id,
    session_id: run.session.meta.id,
    approvals: pending,
  };
}

/** How a run ended, once what its tool calls did is taken into account. */
export interface SettledOutcome {
  status: RunStatus;
  error: ErrorObject | null;
  /** A copy of the outcome's diagnostics, with the changes to status and error reflected. */
  diagnostics: Diagnostic[];
}

/**
 * Decides a run's status and error from the backend's outcome and the run's tool calls: a tool
 * error code the guest made up itself counts as `RUNTIME_ERROR`, and a call that ended the run
 * (the gateway's `fatal`) decides how it ended whatever the guest did after.
 */
export function settleOutcome(outcome: RuntimeRunOutcome, gateway: ToolGateway): SettledOutcome {
  const diagnostics: Diagnostic[] = [...outcome.diagnostics];
  let status: RunStatus = outcome.status;
  let error = outcome.error;
  if (error && (status === "runtime_error" || status === "permission_denied")) {
    // Guest code can throw a ToolError of its own making: its code counts only when a call
    // of this run really failed with it.
    const code = error.code;
    const genuine =
      code === "RUNTIME_ERROR" || gateway.records.some((record) => record.error?.code === code);
    if (!genuine) {
      error = { ...error, code: "RUNTIME_ERROR" };
      status = "runtime_error";
      const index = diagnostics.findIndex(
        (item) => item.severity === "error" && item.code === code,
      );
      if (index >= 0) diagnostics[index] = { ...diagnostics[index]!, code: "RUNTIME_ERROR" };
    }
  }
  const fatal = gateway.fatal;
  if (fatal) {
    status = fatal.status;
    error = fatal.error;
    const index = diagnostics.findIndex((item) => item.severity === "error");
    const diagnostic: Diagnostic = {
      severity: "error",
      code: fatal.error.code,
      message: fatal.error.message,
      hint: fatal.error.hint,
      span: fatal.error.span,
    };
    if (index >= 0) diagnostics[index] = diagnostic;
    else diagnostics.unshift(diagnostic);
  }
  return { status, error, diagnostics };
}

/** Rounds a metric to a whole number within u32 (what the seed's metrics hold). */
export function clampU32(value: number): number {
  return Math.min(4_294_967_295, Math.max(0, Math.round(value)));
}

/** Describes a snapshot from its verified contents. */
export function describeSnapshot(id: string, bytes: number, read: ReadSnapshot): SnapshotInfo {
  return describeHeader(id, bytes, read.opened.header, read.payload.journal?.runs.length ?? 0);
}

/** Describes a snapshot just taken. */
export function describeSealed(sealed: SealedSnapshot, journalRuns: number): SnapshotInfo {
  return describeHeader(sealed.id, sealed.bytes.length, sealed.header, journalRuns);
}

function describeHeader(
  id: string,
  bytes: number,
  header: SnapshotHeader,
  journalRuns: number,
): SnapshotInfo {
  return {
    snapshot_id: id,
    session_id: header.session.id,
    bytes,
    backend: header.backend,
    engine: header.engine,
    language: header.language,
    kinds: [...header.kinds],
    created_at: header.created_at,
    journal_runs: journalRuns,
  };
}
