/**
 * The session manager: sessions and their runs, between the HTTP API and the backends.
 *
 * - Sessions are created explicitly or by their first run, on the backend configured for
 *   their language (or the one asked for). State lives in the backend between runs.
 * - Each session runs one run at a time; others wait in a FIFO queue of at most
 *   `maxQueuedRuns` (past it: `SESSION_BUSY`).
 * - Limits: a session's limits are the server defaults overlaid with what its creator asked
 *   for; a run may ask for different limits (and `timeout_ms` for wall_ms). Anything above a
 *   ceiling is `LIMIT_EXCEEDS_CEILING`.
 * - Sessions idle longer than `sessionIdleTtlMs` are destroyed; at most `maxSessions` exist.
 * - Runs can be cancelled by id, while queued or running; finished runs are remembered for
 *   `runRetentionMs` so their result can be fetched again.
 * - Snapshots (docs/snapshots.md): every run that executed is journaled (code, inputs,
 *   limits, seed, clock reads, tool replies), so a session can be snapshotted to bytes, kept
 *   in a {@link SnapshotStore} and restored here or on another host, by replaying its journal
 *   or loading its backend's image. A snapshot is taken between runs: once the running run
 *   ends, before queued ones start.
 * - Hibernation: sessions idle past `hibernateAfterMs`, or the least recently used idle ones
 *   when `maxSessions` is reached or the process's RSS passes `hibernateAboveRssBytes`, are
 *   snapshotted to the store and evicted from their backend; their next run (or any call
 *   naming them) restores them first, transparently.
 *
 * Guest failures are RunResults. What the caller got wrong about the run itself (a bad
 * session id, a limit above its ceiling, a language the session cannot run) is a RunResult
 * with status `validation_error` too, as in seed 004. Only capacity problems (`SESSION_BUSY`,
 * `SESSION_LIMIT_REACHED`) and shutdown (`SERVICE_CLOSING`) are thrown.
 *
 * This module accepts runs and queues them; its collaborators do the rest: ./sessions.ts
 * (the live sessions), ./runs.ts (runs by id), ./execute.ts (one run in its backend),
 * ./snapshots.ts (snapshots, restores, hibernation). Its shapes are in ./types.ts.
 *
 * @module
 */
import { randomUUID } from "node:crypto";
import { assertRunId, assertSessionId } from "../contract/ids.ts";
import {
  type ErrorObject,
  type Language,
  type RunResult,
  type SessionLimits,
  SIDE_EFFECTS,
} from "../contract/types.ts";
import { errorObject, isSandboxError, SandboxError } from "../errors.ts";
import type { SnapshotStore } from "../snapshot/store.ts";
import { ApprovalQueue } from "../tools/approvals.ts";
import { StubCache } from "../tools/stubs.ts";
import { WorkspaceRegistry } from "../workspace.ts";
import { type ExecuteContext, executeRun } from "./execute.ts";
import type { HibernationResume } from "./hibernation-index.ts";
import { assertWithinCeilings, mergeLimits } from "./limits.ts";
import { refusal } from "./results.ts";
import { RunTable } from "./runs.ts";
import { SessionPool } from "./sessions.ts";
import { SessionSnapshots } from "./snapshots.ts";
import { isIdle, type SessionState, touch } from "./state.ts";
import type {
  CreateSessionInput,
  RestoreInfo,
  RestoreInput,
  RunHooks,
  RunInfo,
  RunInput,
  SessionInfo,
  SessionManagerOptions,
  SnapshotInfo,
} from "./types.ts";

/** See the module comment. */
export class SessionManager {
  readonly #defaults: SessionLimits;
  readonly #ceilings: SessionLimits;
  readonly #idleTtlMs: number;
  readonly #maxQueuedRuns: number;
  readonly #defaultLanguage: Language;
  readonly #sessions: SessionPool;
  readonly #runs: RunTable;
  readonly #snapshots: SessionSnapshots;
  readonly #executeContext: ExecuteContext;
  readonly #sweeper: NodeJS.Timeout;
  readonly #hibernateOnCloseMs: number;
  /** Tool calls waiting for a person (`GET /v1/approvals`). */
  readonly approvals: ApprovalQueue;
  /** Typed declarations of the tools (`GET /v1/capabilities/stubs`, TypeScript type-checks). */
  readonly stubs: StubCache;
  /** The sessions' file workspaces. */
  readonly workspaces: WorkspaceRegistry;

  /** @throws SandboxError `LIMIT_EXCEEDS_CEILING` when a default is above its ceiling. */
  constructor(options: SessionManagerOptions) {
    this.#defaults = { ...options.defaults };
    this.#ceilings = { ...options.ceilings };
    assertWithinCeilings(this.#defaults, this.#ceilings);
    this.#idleTtlMs = options.sessionIdleTtlMs ?? 15 * 60_000;
    this.#maxQueuedRuns = options.maxQueuedRuns ?? 8;
    this.#defaultLanguage = options.defaultLanguage ?? "python";
    const allowedSideEffects = new Set(options.allowedSideEffects ?? SIDE_EFFECTS);
    this.stubs = new StubCache(options.tools);
    this.workspaces = options.workspaces ?? new WorkspaceRegistry();
    this.#runs = new RunTable({
      retentionMs: options.runRetentionMs ?? 10 * 60_000,
      maxRetainedRuns: Math.max(0, options.maxRetainedRuns ?? 10_000),
      pendingFor: (runId) => this.approvals.pendingFor(runId),
    });
    this.#sessions = new SessionPool({
      runtimes: options.runtimes,
      defaults: this.#defaults,
      ceilings: this.#ceilings,
      maxSessions: options.maxSessions ?? 500,
      idleTtlMs: this.#idleTtlMs,
      allowedSideEffects,
      workspaces: this.workspaces,
      runs: this.#runs,
      onSessionDestroyed: options.onSessionDestroyed,
      hibernation: () => this.#snapshots,
    });
    this.#snapshots = new SessionSnapshots({
      snapshots: options.snapshots,
      pool: this.#sessions,
      runtimes: options.runtimes,
      tools: options.tools,
      workspaces: this.workspaces,
      ceilings: this.#ceilings,
      allowedSideEffects,
      idleTtlMs: this.#idleTtlMs,
      runTask: (session, work) => this.#runTask(session, work),
    });
    this.approvals = new ApprovalQueue({
      ttlMs: options.approvalTtlMs ?? 10 * 60_000,
      onPending: (approval) => this.#runs.onApprovalPending(approval),
      onSettled: (approval) => this.#runs.onApprovalSettled(approval),
    });
    const shortest = Math.min(this.#idleTtlMs, this.#snapshots.hibernateAfterMs ?? this.#idleTtlMs);
    const sweepEveryMs = Math.max(250, Math.min(30_000, Math.floor(shortest / 4)));
    this.#hibernateOnCloseMs = Math.max(0, options.snapshots?.hibernateOnCloseMs ?? 0);
    this.#sweeper = setInterval(() => void this.sweep(), sweepEveryMs);
    this.#sweeper.unref();
    this.#executeContext = {
      tools: options.tools,
      approvals: this.approvals,
      stubs: this.stubs,
      maxJournalBytes: this.#snapshots.maxJournalBytes,
      snapshot: (session) => this.#snapshots.snapshot(session),
    };
  }

  /** Server-wide limits: defaults and ceilings. */
  get limits(): { defaults: SessionLimits; ceilings: SessionLimits } {
    return { defaults: { ...this.#defaults }, ceilings: { ...this.#ceilings } };
  }

  /** Number of sessions in their backends now (hibernated ones not counted). */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Number of hibernated sessions. */
  get hibernatedCount(): number {
    return this.#snapshots.hibernatedCount;
  }

  /** The snapshot store. */
  get snapshotStore(): SnapshotStore {
    return this.#snapshots.store;
  }

  /**
   * Creates a session (`POST /v1/sessions`).
   * @throws SandboxError `INVALID_SESSION_ID`, `SESSION_EXISTS`, `SESSION_LIMIT_REACHED`,
   *   `LIMIT_EXCEEDS_CEILING`, `UNSUPPORTED_LANGUAGE`, `UNKNOWN_RUNTIME`, `SERVICE_CLOSING`.
   */
  async createSession(input: CreateSessionInput = {}): Promise<SessionInfo> {
    const id = input.session_id === undefined ? randomUUID() : assertSessionId(input.session_id);
    if (this.#sessions.has(id) || this.#snapshots.isHibernated(id)) {
      throw new SandboxError("SESSION_EXISTS", `Session '${id}' already exists.`);
    }
    const session = await this.#sessions.create(
      id,
      input.language ?? this.#defaultLanguage,
      input.limits,
      input.runtime,
      input.allowed_side_effects ?? null,
    );
    return this.#sessions.info(session);
  }

  /** @throws SandboxError `SESSION_NOT_FOUND`, `INVALID_SESSION_ID`. */
  getSession(id: string): SessionInfo {
    assertSessionId(id);
    return this.#snapshots.info(id) ?? this.#sessions.info(this.#sessions.require(id));
  }

  /**
   * Marks a session as used now — waking it first if it hibernated — and describes it. For
   * embedders that work on a session's workspace between runs (runner sessions), so the
   * session neither hibernates nor expires while in use.
   * @throws SandboxError `SESSION_NOT_FOUND`, `INVALID_SESSION_ID`, and what a wake throws.
   */
  async useSession(id: string): Promise<SessionInfo> {
    assertSessionId(id);
    let session = this.#sessions.get(id) ?? (await this.#sessions.pending(id));
    if (!session && this.#snapshots.isHibernated(id)) session = await this.#snapshots.wake(id);
    if (!session || session.destroyed)
      throw new SandboxError("SESSION_NOT_FOUND", `No session '${id}'.`);
    touch(session);
    return this.#sessions.info(session);
  }

  /** Every session, oldest first (hibernated ones included). */
  listSessions(): SessionInfo[] {
    return [
      ...this.#sessions.list().map((session) => this.#sessions.info(session)),
      ...this.#snapshots.list(),
    ].sort((a, b) => a.created_at - b.created_at);
  }

  /**
   * Destroys a session: its running run is cancelled, queued runs end `cancelled`.
   * @throws SandboxError `SESSION_NOT_FOUND`, `INVALID_SESSION_ID`.
   */
  async destroySession(id: string): Promise<void> {
    assertSessionId(id);
    if (this.#snapshots.isHibernated(id)) {
      await this.#snapshots.drop(id);
      return;
    }
    const session = this.#sessions.require(id);
    await this.#sessions.destroy(session, "The session was destroyed.");
  }

  /**
   * Runs code (`POST /v1/runs`) and answers its RunResult once it ends — or, when a tool call
   * first needs a person's approval, a RunResult with status `waiting_for_approval` (the run
   * goes on; fetch its final result with {@link waitForRun}).
   * @throws SandboxError `SESSION_BUSY`, `SESSION_LIMIT_REACHED`, `SERVICE_CLOSING`.
   */
  async run(input: RunInput): Promise<RunResult> {
    const accepted = await this.submit(input);
    return Promise.race([accepted.done, accepted.waiting]);
  }

  /**
   * Accepts a run and answers at once with its id and a promise of its result.
   * @throws SandboxError like {@link run}.
   */
  async submit(
    input: RunInput,
    hooks: RunHooks = {},
  ): Promise<{ runId: string; done: Promise<RunResult>; waiting: Promise<RunResult> }> {
    const sessions = this.#sessions;
    if (sessions.closing) throw new SandboxError("SERVICE_CLOSING", "The server is shutting down.");
    const runId = input.run_id ?? randomUUID();
    const sessionId = input.session_id ?? "default";
    const refuse = (error: ErrorObject) => {
      const done = Promise.resolve(refusal(runId, sessionId, error));
      return { runId, done, waiting: done };
    };
    try {
      assertSessionId(sessionId);
      if (input.run_id !== undefined) {
        assertRunId(input.run_id);
        if (this.#runs.has(input.run_id)) {
          throw new SandboxError(
            "RUN_ID_IN_USE",
            `Run id '${input.run_id}' is in use; choose another.`,
          );
        }
      }
    } catch (error) {
      if (isSandboxError(error)) return refuse(error.toErrorObject());
      throw error;
    }

    let session: SessionState;
    let limits: SessionLimits;
    let language: Language;
    try {
      // Twice at most: a first run that creates its session can race another request that
      // created (or woke) it meanwhile; the second look finds that session.
      for (let attempt = 1; ; attempt++) {
        let existing = sessions.get(sessionId) ?? (await sessions.pending(sessionId));
        if (!existing && this.#snapshots.isHibernated(sessionId)) {
          existing = await this.#snapshots.wake(sessionId);
        }
        if (existing && !existing.destroyed) {
          session = existing;
          language = input.language ?? session.meta.language;
          if (!session.runtime.info.languages.includes(language)) {
            throw new SandboxError(
              "LANGUAGE_MISMATCH",
              `Session '${sessionId}' runs ${session.runtime.info.languages.join(" and ")}, not ${language}.`,
            );
          }
          limits = mergeLimits(session.meta.limits, input.limits, this.#ceilings, input.timeout_ms);
          break;
        }
        language = input.language ?? this.#defaultLanguage;
        // Check limits before creating anything, so a refused run leaves no session behind.
        mergeLimits(this.#defaults, input.limits, this.#ceilings, input.timeout_ms);
        try {
          session = await sessions.create(sessionId, language, input.limits, input.runtime, null);
        } catch (error) {
          if (attempt < 2 && isSandboxError(error) && error.code === "SESSION_EXISTS") continue;
          throw error;
        }
        limits = mergeLimits(session.meta.limits, null, this.#ceilings, input.timeout_ms);
        break;
      }
    } catch (error) {
      if (isSandboxError(error) && !isCapacityError(error)) return refuse(error.toErrorObject());
      throw error;
    }

    if (session.destroyed) {
      return refuse(
        errorObject(
          "SESSION_NOT_FOUND",
          `Session '${sessionId}' was destroyed while the run was accepted.`,
        ),
      );
    }
    if (session.queue.length >= this.#maxQueuedRuns && (session.running || session.busy)) {
      throw new SandboxError(
        "SESSION_BUSY",
        `Session '${sessionId}' has ${session.queue.length} runs waiting (the most allowed); retry when one ends.`,
      );
    }
    const run = this.#runs.add({
      id: runId,
      session,
      language,
      code: input.code,
      inputs: input.inputs ?? {},
      limits,
      validateOnly: input.validate_only ?? false,
      returnSnapshot: input.return_snapshot ?? false,
      onOutput: hooks.onOutput,
      ephemeral: hooks.ephemeral ?? false,
    });
    session.queue.push(run);
    touch(session);
    this.#pump(session);
    return { runId, done: run.done, waiting: run.waiting };
  }

  /**
   * Cancels a queued or running run; answers false when it had already finished.
   * @throws SandboxError `RUN_NOT_FOUND`.
   */
  cancelRun(runId: string): boolean {
    return this.#runs.cancel(runId);
  }

  /**
   * A run's state and, once finished, its result.
   * @throws SandboxError `RUN_NOT_FOUND`.
   */
  getRun(runId: string): RunInfo {
    return this.#runs.info(runId);
  }

  /**
   * Waits up to `waitMs` for a run to finish, then answers {@link getRun}.
   * @throws SandboxError `RUN_NOT_FOUND`.
   */
  async waitForRun(runId: string, waitMs: number): Promise<RunInfo> {
    return this.#runs.wait(runId, waitMs);
  }

  /** Runs that have not finished, oldest first. */
  activeRuns(): RunInfo[] {
    return this.#runs.active();
  }

  /**
   * Destroys expired idle sessions (hibernated ones too), hibernates idle sessions past
   * `hibernateAfterMs` or while the process's RSS is above `hibernateAboveRssBytes`, forgets
   * old finished runs and collects the snapshot store hourly (runs periodically).
   */
  async sweep(now = Date.now()): Promise<void> {
    const hibernateAfterMs = this.#snapshots.hibernateAfterMs;
    for (const session of this.#sessions.list()) {
      if (!isIdle(session)) continue;
      const idleMs = now - session.meta.last_used_at;
      if (idleMs >= this.#idleTtlMs) await this.#sessions.destroy(session, "The session expired.");
      else if (hibernateAfterMs !== null && idleMs >= hibernateAfterMs) {
        await this.#snapshots.hibernate(session).catch(() => false);
      }
    }
    await this.#snapshots.sweep(now);
    this.#runs.sweep(now);
    await this.#snapshots.collect(now);
  }

  /**
   * Snapshots a session (`POST /v1/sessions/{id}/snapshot`) once its running run ends, stores
   * it and describes it. A hibernated session answers the snapshot it hibernated into.
   * @throws SandboxError `SESSION_NOT_FOUND`, `INVALID_SESSION_ID`, `SNAPSHOT_NOT_SUPPORTED`,
   *   `SNAPSHOT_TOO_LARGE`, `SNAPSHOT_STORE_FULL`.
   */
  async snapshotSession(id: string): Promise<SnapshotInfo> {
    return this.#snapshots.snapshotSession(id);
  }

  /**
   * Restores a session from a stored snapshot or from bytes (`POST /v1/sessions/restore`),
   * by loading its image (same backend and build) or replaying its journal. Nothing is left
   * behind when it fails.
   * @throws SandboxError `INVALID_REQUEST` (neither or both of id and bytes), `SNAPSHOT_*`
   *   (docs/errors.md), `SESSION_EXISTS`, `SESSION_LIMIT_REACHED`, `LIMIT_EXCEEDS_CEILING`,
   *   `UNKNOWN_RUNTIME`, `UNSUPPORTED_LANGUAGE`, `SERVICE_CLOSING`.
   */
  async restoreSession(input: RestoreInput): Promise<RestoreInfo> {
    return this.#snapshots.restore(input);
  }

  /**
   * A stored snapshot's bytes (`GET /v1/snapshots/{id}`).
   * @throws SandboxError `SNAPSHOT_NOT_FOUND`.
   */
  async getSnapshot(id: string): Promise<Uint8Array> {
    return this.#snapshots.get(id);
  }

  /**
   * Verifies snapshot bytes (digest, signature, header and payload) and stores them
   * (`POST /v1/snapshots`); storing the same bytes again is a no-op.
   * @throws SandboxError `SNAPSHOT_*` of a snapshot that does not verify, `SNAPSHOT_STORE_FULL`.
   */
  async putSnapshot(bytes: Uint8Array): Promise<SnapshotInfo> {
    return this.#snapshots.put(bytes);
  }

  /**
   * Deletes a stored snapshot (`DELETE /v1/snapshots/{id}`).
   * @throws SandboxError `SNAPSHOT_NOT_FOUND`, `SNAPSHOT_IN_USE` (a hibernated session's).
   */
  async deleteSnapshot(id: string): Promise<void> {
    return this.#snapshots.delete(id);
  }

  /** Stored snapshots, newest first, and the store's usage (`GET /v1/snapshots`). */
  async listSnapshots(): Promise<{
    snapshots: { snapshot_id: string; bytes: number; stored_at: number }[];
    usage: { bytes: number; count: number; max_bytes: number };
  }> {
    return this.#snapshots.stored();
  }

  /**
   * Hibernates an idle session now (what the sweeper does after `hibernateAfterMs`); answers
   * false when it is busy or cannot be snapshotted.
   * @throws SandboxError `SESSION_NOT_FOUND`, `INVALID_SESSION_ID`.
   */
  async hibernateSession(id: string): Promise<boolean> {
    assertSessionId(id);
    if (this.#snapshots.isHibernated(id)) return true;
    return this.#snapshots.hibernate(this.#sessions.require(id));
  }

  /**
   * Takes back the sessions a previous server on the same data dir left hibernated (its
   * hibernation index, `SnapshotOptions.hibernationIndex`): they wake on their next use. Call
   * once, before serving. Without an index, answers zeros.
   * @throws the index's read error (a file that exists but cannot be read).
   */
  resumeHibernated(now: number = Date.now()): Promise<HibernationResume> {
    return this.#snapshots.resume(now);
  }

  /**
   * Stops the sweeper; hibernates idle sessions for up to `hibernateOnCloseMs` (most
   * recently used first; with a hibernation index they outlive the process); then stops
   * taking runs, cancels what runs and destroys every other session.
   */
  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    const budgetMs = this.#hibernateOnCloseMs;
    if (budgetMs > 0) await this.#snapshots.hibernateIdle(performance.now() + budgetMs);
    await this.#sessions.close();
    await this.#snapshots.flushIndex();
  }

  /** Starts a session's next task, else its next queued run, unless it is busy. */
  #pump(session: SessionState): void {
    if (session.running || session.busy || session.destroyed) return;
    const task = session.tasks.shift();
    if (task) {
      session.busy = true;
      void task.run().finally(() => {
        session.busy = false;
        this.#pump(session);
      });
      return;
    }
    const next = session.queue.shift();
    if (!next) return;
    session.running = next;
    next.state = "running";
    void executeRun(next, this.#executeContext)
      .catch((error: unknown) =>
        // A host failure outside the backend call must not leave the session running forever.
        refusal(
          next.id,
          session.meta.id,
          errorObject(
            "INTERNAL_ERROR",
            `The run failed in the server: ${error instanceof Error ? error.message : String(error)}`,
          ),
          "interrupted",
        ),
      )
      .then((result) => {
        session.running = null;
        session.runCount += 1;
        touch(session);
        this.#runs.finish(next, result);
        this.#pump(session);
      });
  }

  /** Runs `work` on a session between runs: after the running run, before queued ones. */
  #runTask<T>(session: SessionState, work: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      session.tasks.push({
        run: () => work().then(resolve, reject),
        cancel: reject,
      });
      this.#pump(session);
    });
  }
}

function isCapacityError(error: SandboxError): boolean {
  return (
    error.code === "SESSION_LIMIT_REACHED" ||
    error.code === "SERVICE_CLOSING" ||
    error.code === "SESSION_BUSY"
  );
}
