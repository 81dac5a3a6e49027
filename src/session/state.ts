/**
 * What the session manager keeps of each session and run while it lives (internal: none of it
 * goes on the wire as is), and the few rules that read it: when a session is idle, and how it
 * is shown as a {@link SessionInfo}.
 *
 * @module
 */
import {
  type JsonObject,
  type Language,
  type RunResult,
  type SessionLimits,
  type SessionMeta,
  SIDE_EFFECTS,
  type SideEffect,
} from "../contract/types.ts";
import type { ErrorCode } from "../errors.ts";
import type { LanguageRuntime } from "../runtime/interface.ts";
import type { JournalRun } from "../snapshot/journal.ts";
import type { ToolGateway } from "../tools/gateway.ts";
import type { RunHooks, RunInfo, SessionInfo } from "./types.ts";

/** A session in its backend (or one just evicted from it: `destroyed`). */
export interface SessionState {
  meta: SessionMeta;
  runtime: LanguageRuntime;
  allowedSideEffects: ReadonlySet<SideEffect>;
  /** JavaScript/TypeScript cells run so far (bounded), for the type-checker's view of globals. */
  cellHistory: { code: string; language: Language }[];
  cellHistoryChars: number;
  /** Input names bound in earlier runs (they stay globals). */
  inputNames: Set<string>;
  running: RunState | null;
  queue: RunState[];
  /** Work that needs the session between runs (snapshots); it goes before queued runs. */
  tasks: { run: () => Promise<void>; cancel: (error: Error) => void }[];
  /** A task is being done. */
  busy: boolean;
  runCount: number;
  destroyed: boolean;
  /** Runs that built the session's state, for replay; empty when {@link journalGap} is set. */
  journal: JournalRun[];
  journalBytes: number;
  /** Why the session can no longer be journaled (until it is reset), or null. */
  journalGap: string | null;
}

/** A session evicted to the snapshot store. */
export interface HibernatedSession {
  meta: SessionMeta;
  runtimeId: string;
  allowedSideEffects: SideEffect[];
  runCount: number;
  snapshotId: string;
  /** The snapshot id was handed to a client: keep the snapshot when the session wakes. */
  shared: boolean;
  /**
   * Why the session cannot be woken (its snapshot no longer restores), with the code to
   * answer; null while it can. A broken session answers that error until it is destroyed or
   * expires, rather than starting over empty under the same id.
   */
  broken: { code: ErrorCode; message: string } | null;
}

/**
 * A session task was not run because the session moved (it hibernated, or woke) first; the
 * caller asks again and finds it where it is now.
 */
export class SessionMovedError extends Error {
  constructor(id: string) {
    super(`Session '${id}' moved while the task waited.`);
    this.name = "SessionMovedError";
  }
}

/** A run from the moment it is accepted until it is forgotten. */
export interface RunState {
  id: string;
  session: SessionState;
  language: Language;
  code: string;
  inputs: JsonObject;
  limits: SessionLimits;
  validateOnly: boolean;
  returnSnapshot: boolean;
  onOutput: RunHooks["onOutput"];
  /** Not journaled (see RunHooks.ephemeral). */
  ephemeral: boolean;
  controller: AbortController;
  state: RunInfo["state"];
  createdAt: number;
  enqueuedAt: number;
  finishedAt: number;
  result: RunResult | null;
  done: Promise<RunResult>;
  resolve(result: RunResult): void;
  gateway: ToolGateway | null;
  pendingApprovals: number;
  /** Settles with a `waiting_for_approval` RunResult the first time the run waits for a person. */
  waiting: Promise<RunResult>;
  notifyWaiting(result: RunResult): void;
}

/** What a new {@link SessionState} starts from; the rest starts empty. */
export type SessionStateInit = Pick<
  SessionState,
  "meta" | "runtime" | "allowedSideEffects" | "runCount" | "journal" | "journalGap"
>;

/** A session with no runs queued, running or remembered for the type-checker. */
export function newSessionState(init: SessionStateInit): SessionState {
  return {
    meta: init.meta,
    runtime: init.runtime,
    allowedSideEffects: init.allowedSideEffects,
    cellHistory: [],
    cellHistoryChars: 0,
    inputNames: new Set(),
    running: null,
    queue: [],
    tasks: [],
    busy: false,
    runCount: init.runCount,
    destroyed: false,
    journal: init.journal,
    journalBytes: 0,
    journalGap: init.journalGap,
  };
}

/** Whether nothing runs, waits or is being done in a session (it may be hibernated or destroyed). */
export function isIdle(session: SessionState): boolean {
  return (
    !session.running &&
    !session.busy &&
    session.queue.length === 0 &&
    session.tasks.length === 0 &&
    !session.destroyed
  );
}

/** Marks a session used now (its idle time starts again). */
export function touch(session: SessionState): void {
  session.meta.last_used_at = Date.now();
}

/** A session's side-effect classes in {@link SIDE_EFFECTS} order. */
export function sideEffectsOf(session: SessionState): SideEffect[] {
  return SIDE_EFFECTS.filter((effect) => session.allowedSideEffects.has(effect));
}

const DAY_MS = 86_400_000;

/** A session as the API shows it; `idleTtlMs` is the manager's `sessionIdleTtlMs`. */
export function sessionInfo(session: SessionState, idleTtlMs: number): SessionInfo {
  return {
    ...session.meta,
    limits: { ...session.meta.limits },
    runtime: session.runtime.info.id,
    state: session.running ? "running" : "idle",
    queued_runs: session.queue.length,
    run_count: session.runCount,
    allowed_side_effects: sideEffectsOf(session),
    expires_at: Math.min(
      session.meta.last_used_at + idleTtlMs,
      session.meta.last_used_at + 365 * DAY_MS,
    ),
  };
}

/** A hibernated session as the API shows it; `idleTtlMs` as for {@link sessionInfo}. */
export function hibernatedInfo(hibernated: HibernatedSession, idleTtlMs: number): SessionInfo {
  const meta = hibernated.meta;
  return {
    ...meta,
    limits: { ...meta.limits },
    runtime: hibernated.runtimeId,
    state: "hibernated",
    queued_runs: 0,
    run_count: hibernated.runCount,
    allowed_side_effects: [...hibernated.allowedSideEffects],
    expires_at: Math.min(meta.last_used_at + idleTtlMs, meta.last_used_at + 365 * DAY_MS),
  };
}
