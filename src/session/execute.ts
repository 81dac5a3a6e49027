/**
 * Executing one run in its session's backend: its tool gateway, the backend call, the
 * type-check of `validate_only` TypeScript, journaling, `return_snapshot`, and the RunResult
 * with its metrics. The session manager calls it when the run's turn comes; the run's session
 * is not running anything else.
 *
 * A backend that throws is a host failure, reported as an `interrupted` RunResult
 * (`ENGINE_CRASHED` unless it threw a SandboxError); the session survives but stops being
 * journaled.
 *
 * @module
 */
import type { Diagnostic, RunResult } from "../contract/types.ts";
import { errorObject, isSandboxError } from "../errors.ts";
import { freshSeed } from "../runtime/determinism.ts";
import type { RunDeterminism, RuntimeRunOutcome } from "../runtime/interface.ts";
import { replayJournal, type SealedSnapshot } from "../snapshot/snapshots.ts";
import type { ApprovalQueue } from "../tools/approvals.ts";
import { ToolGateway } from "../tools/gateway.ts";
import type { ToolRegistry } from "../tools/registry.ts";
import type { StubCache } from "../tools/stubs.ts";
import { journalRun, stopJournal } from "./journal.ts";
import { clampU32, hostOutcome, settleOutcome } from "./results.ts";
import type { RunState, SessionState } from "./state.ts";
import { rememberCell, typecheckRun } from "./typecheck.ts";

/** What {@link executeRun} needs of the session manager. */
export interface ExecuteContext {
  tools: ToolRegistry;
  approvals: ApprovalQueue;
  stubs: StubCache;
  /** Bytes a session's journal may grow to (`SnapshotOptions.maxJournalBytes`). */
  maxJournalBytes: number;
  /** Snapshots a session that is not running and stores it (for `return_snapshot`). */
  snapshot: (session: SessionState) => Promise<SealedSnapshot>;
}

/**
 * When the backend lost the session's state under a neighbour's crash, replays the journal
 * into it (no tool is called) so the run finds its state; answers a diagnostic saying what
 * happened, or null when nothing was lost.
 */
async function rebuildLostState(
  session: SessionState,
  context: ExecuteContext,
): Promise<Diagnostic | null> {
  const runtime = session.runtime;
  if (!runtime.sessionLost?.(session.meta.id)) return null;
  if (session.journalGap || session.journal.length === 0) return null;
  const runs = session.journal.length;
  try {
    // Not the run's signal: cancelling the run must not cut the rebuild short (each replayed
    // run is bounded by its own recorded limits).
    await replayJournal(
      runtime,
      session.meta.id,
      { runs: session.journal },
      context.tools.names(),
      new AbortController().signal,
    );
    return {
      severity: "info",
      code: "SESSION_RESTORED",
      message: `The session's engine worker had stopped; its state was rebuilt from its journal (${runs} run${runs === 1 ? "" : "s"}, no tool called again) before this run.`,
      hint: null,
      span: null,
    };
  } catch (error) {
    // What the replay left is not the session's state: start over, empty, and say so.
    session.journal = [];
    session.journalBytes = 0;
    await runtime.destroySession(session.meta.id).catch(() => false);
    // If the backend cannot make it again, the run itself reports SESSION_NOT_FOUND.
    await runtime
      .createSession(session.meta.id, session.meta.limits, session.meta.language)
      .catch(() => {});
    return {
      severity: "warning",
      code: "SESSION_RESET",
      message: `The session's engine worker had stopped and its state could not be rebuilt (${error instanceof Error ? error.message : String(error)}); this run starts from an empty session.`,
      hint: "Values from earlier runs are gone; recreate them.",
      span: null,
    };
  }
}

/** Executes a run that has its session to itself and answers its RunResult. */
export async function executeRun(run: RunState, context: ExecuteContext): Promise<RunResult> {
  const started = performance.now();
  const queueMs = started - run.enqueuedAt;
  const session = run.session;
  const gateway = new ToolGateway({
    registry: context.tools,
    sessionId: session.meta.id,
    runId: run.id,
    maxExternalCalls: run.limits.max_external_calls,
    deadline: started + run.limits.wall_ms,
    signal: run.controller.signal,
    allowedSideEffects: session.allowedSideEffects,
    approvals: context.approvals,
    session: { language: session.meta.language, runtime: session.runtime.info.id },
  });
  run.gateway = gateway;
  const determinism: RunDeterminism = { seed: freshSeed(), clock: null };
  const rebuilt = run.validateOnly ? null : await rebuildLostState(session, context);
  /** Whether the backend ran the code and reported how it ended. */
  let reported = false;
  let outcome: RuntimeRunOutcome;
  if (run.controller.signal.aborted) {
    outcome = hostOutcome("cancelled", errorObject("RUN_CANCELLED", "The run was cancelled."));
  } else {
    try {
      outcome = await session.runtime.run({
        runId: run.id,
        sessionId: session.meta.id,
        language: run.language,
        code: run.code,
        inputs: run.inputs,
        limits: run.limits,
        validateOnly: run.validateOnly,
        tools: gateway,
        signal: run.controller.signal,
        determinism,
        ...(run.onOutput ? { onOutput: run.onOutput } : {}),
      });
      reported = true;
    } catch (error) {
      // What the code did before the backend failed is unknown: the journal cannot replay it.
      if (!run.validateOnly) {
        stopJournal(session, "the backend failed during a run, leaving its state unknown");
      }
      const failure = isSandboxError(error)
        ? error.toErrorObject()
        : errorObject(
            "ENGINE_CRASHED",
            `The backend failed: ${error instanceof Error ? error.message : String(error)}`,
          );
      outcome = hostOutcome("interrupted", failure);
    }
  }
  gateway.settle();
  if (run.validateOnly && run.language === "typescript" && outcome.status === "ok") {
    outcome = await typecheckRun(run, outcome, context.tools, context.stubs);
  } else if (!run.validateOnly && outcome.status !== "validation_error") {
    if (!run.ephemeral) {
      rememberCell(run);
      if (reported) journalRun(run, outcome, gateway, determinism, context.maxJournalBytes);
    } else if (reported && outcome.sessionReset) {
      // Even a run that keeps nothing can lose the session's state: the journal empties with it.
      journalRun(run, outcome, gateway, determinism, context.maxJournalBytes);
    }
  }
  const { status, error, diagnostics } = settleOutcome(outcome, gateway);
  if (rebuilt) diagnostics.push(rebuilt);
  let snapshotId: string | null = null;
  if (run.returnSnapshot && !run.validateOnly) {
    try {
      snapshotId = (await context.snapshot(session)).id;
    } catch (failure) {
      const described = isSandboxError(failure)
        ? failure.toErrorObject()
        : errorObject("INTERNAL_ERROR", String(failure));
      diagnostics.push({
        severity: "warning",
        code: described.code,
        message: `return_snapshot was asked, but no snapshot was taken: ${described.message}`,
        hint: described.hint,
        span: null,
      });
    }
  }
  const records = [...gateway.records];
  return {
    status,
    result: outcome.result,
    stdout: outcome.stdout,
    stderr: outcome.stderr,
    diagnostics,
    external_calls: records,
    snapshot_id: snapshotId,
    metrics: {
      duration_ms: clampU32(performance.now() - started),
      memory_peak_bytes: Math.max(0, Math.round(outcome.memoryPeakBytes)),
      instructions: Math.max(0, Math.round(outcome.instructions)),
      external_calls_count: records.length,
      cpu_ms: clampU32(outcome.cpuMs),
      queue_ms: clampU32(queueMs),
    },
    error,
    run_id: run.id,
    session_id: session.meta.id,
  };
}
