/**
 * A session's journal (docs/snapshots.md): every run that executed, with what it needs to be
 * replayed exactly (code, inputs, limits, seed, clock reads, tool replies). A session whose
 * state can no longer be rebuilt from its journal stops being journaled, and keeps why in
 * `journalGap`, until a run resets it.
 *
 * @module
 */
import type { RunDeterminism, RuntimeRunOutcome } from "../runtime/interface.ts";
import type { JournalRun } from "../snapshot/journal.ts";
import { resultDigestOf } from "../snapshot/snapshots.ts";
import type { ToolGateway } from "../tools/gateway.ts";
import type { RunState, SessionState } from "./state.ts";

/**
 * Appends an executed run to its session's journal (or stops journaling, saying why).
 * `maxJournalBytes` bounds the journal's JSON size (`SnapshotOptions.maxJournalBytes`).
 */
export function journalRun(
  run: RunState,
  outcome: RuntimeRunOutcome,
  gateway: ToolGateway,
  determinism: RunDeterminism,
  maxJournalBytes: number,
): void {
  const session = run.session;
  if (outcome.sessionReset) {
    // The state this run leaves is empty: the journal starts again.
    session.journal = [];
    session.journalBytes = 0;
    session.journalGap = null;
    return;
  }
  if (session.journalGap) return;
  if (
    outcome.status === "cancelled" ||
    outcome.status === "timeout" ||
    outcome.status === "interrupted"
  ) {
    // Where a stopped run stopped cannot be replayed: what it changed before is not knowable.
    stopJournal(
      session,
      `a run ended ${outcome.status}, and where it stopped cannot be replayed exactly`,
    );
    return;
  }
  if (!session.runtime.info.snapshotKinds.includes("journal")) {
    // An empty journal restores on any backend; one with runs needs a backend that replays.
    stopJournal(session, `backend '${session.runtime.info.id}' does not replay journals`);
    return;
  }
  if (!outcome.clock) {
    stopJournal(
      session,
      `backend '${session.runtime.info.id}' does not report the clock its runs read`,
    );
    return;
  }
  if (!outcome.clock.complete) {
    stopJournal(session, "a run read the clock more often than a journal records");
    return;
  }
  const entry: JournalRun = {
    code: run.code,
    language: run.language,
    inputs: run.inputs,
    limits: run.limits,
    seed: determinism.seed,
    clock: outcome.clock.values,
    calls: gateway.journal(),
    status: outcome.status,
    result_digest: resultDigestOf(outcome),
  };
  let bytes: number;
  try {
    bytes = JSON.stringify(entry).length;
  } catch {
    stopJournal(session, "a run's inputs cannot be journaled");
    return;
  }
  if (session.journalBytes + bytes > maxJournalBytes) {
    stopJournal(session, `its journal would pass ${maxJournalBytes} bytes (maxJournalBytes)`);
    return;
  }
  session.journal.push(entry);
  session.journalBytes += bytes;
}

/** Stops journaling a session: its journal is dropped and `why` kept (the first reason wins). */
export function stopJournal(session: SessionState, why: string): void {
  session.journalGap ??= why;
  session.journal = [];
  session.journalBytes = 0;
}
