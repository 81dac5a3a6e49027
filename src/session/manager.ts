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
 * @module
 */
import { randomBytes, randomUUID } from "node:crypto";
import { assertRunId, assertSessionId } from "../contract/ids.ts";
import {
  type Diagnostic,
  type ErrorObject,
  type JsonObject,
  type Language,
  type RunRequest,
  type RunResult,
  type RunStatus,
  type SessionId,
  type SessionLimits,
  type SessionMeta,
  SIDE_EFFECTS,
  type SideEffect,
  SNAPSHOT_VERSION,
} from "../contract/types.ts";
import { errorObject, isSandboxError, SandboxError } from "../errors.ts";
import { declaredGlobals } from "../js/cell.ts";
import { typecheckCell, typeOfJson } from "../js/typecheck.ts";
import { freshSeed } from "../runtime/determinism.ts";
import type { LanguageRuntime, RunDeterminism, RuntimeRunOutcome } from "../runtime/interface.ts";
import type { RuntimeRegistry } from "../runtime/registry.ts";
import type { SnapshotHeader, SnapshotKeyring, SnapshotStateKind } from "../snapshot/envelope.ts";
import type { JournalRun } from "../snapshot/journal.ts";
import {
  captureSnapshot,
  DEFAULT_SNAPSHOT_BOUNDS,
  planRestore,
  type ReadSnapshot,
  readSnapshot,
  replayJournal,
  restoreWorkspace,
  resultDigestOf,
  type SealedSnapshot,
  type SnapshotBounds,
} from "../snapshot/snapshots.ts";
import { MemorySnapshotStore, type SnapshotStore } from "../snapshot/store.ts";
import { type Approval, ApprovalQueue } from "../tools/approvals.ts";
import { ToolGateway } from "../tools/gateway.ts";
import type { ToolRegistry } from "../tools/registry.ts";
import { StubCache } from "../tools/stubs.ts";
import { type Workspace, WorkspaceRegistry } from "../workspace.ts";
import { assertWithinCeilings, mergeLimits } from "./limits.ts";

/** Options of {@link SessionManager}. Times in ms. */
export interface SessionManagerOptions {
  runtimes: RuntimeRegistry;
  tools: ToolRegistry;
  /** The sessions' file workspaces; a destroyed session's is dropped (default: a new registry). */
  workspaces?: WorkspaceRegistry;
  /** Called with a session's id after it is destroyed or expires (tool packs free its state). */
  onSessionDestroyed?: (sessionId: string) => void;
  /** Limits of a new session before its creator's requests (seed defaults unless configured). */
  defaults: SessionLimits;
  /** Highest value each limit may be asked for. */
  ceilings: SessionLimits;
  /** Most sessions at once (default 500). */
  maxSessions?: number;
  /** Idle time after which a session is destroyed (default 15 min). */
  sessionIdleTtlMs?: number;
  /** Runs that may wait behind a session's current run (default 8). */
  maxQueuedRuns?: number;
  /** How long a finished run's result can be fetched again (default 10 min). */
  runRetentionMs?: number;
  /** Most finished runs remembered at once; the oldest are forgotten first (default 10,000). */
  maxRetainedRuns?: number;
  /** Language of a session when neither the request nor an existing session says (seed: python). */
  defaultLanguage?: Language;
  /** Side-effect classes any session may use (default: all). A session may narrow them. */
  allowedSideEffects?: readonly SideEffect[];
  /** Time a tool call waits for a person's approval before it is denied (default 10 min). */
  approvalTtlMs?: number;
  /** Snapshots and hibernation (default: an in-memory store, a random key, no hibernation). */
  snapshots?: SnapshotOptions;
}

/** Snapshot settings of a {@link SessionManager}. Times in ms, sizes in bytes. */
export interface SnapshotOptions {
  /** Where snapshots are kept (the server's default: a FsSnapshotStore under the data dir). */
  store: SnapshotStore;
  /** HMAC key snapshots are signed with, and that restores require; null writes unsigned ones. */
  key: Uint8Array | null;
  /** Restore unsigned snapshots (insecure; default false). */
  allowUnsigned?: boolean;
  /** Size bounds (default {@link DEFAULT_SNAPSHOT_BOUNDS}). */
  bounds?: Partial<SnapshotBounds>;
  /** Bytes a session's journal may grow to before the session stops being journaled (default 32 MiB). */
  maxJournalBytes?: number;
  /** Idle time after which a session hibernates; null never (default null). */
  hibernateAfterMs?: number | null;
  /** RSS of this process above which idle sessions hibernate, least recently used first; null never. */
  hibernateAboveRssBytes?: number | null;
}

/** What `POST /v1/sessions/restore` takes: a stored snapshot's id or the bytes themselves. */
export interface RestoreInput {
  snapshot_id?: string;
  snapshot?: Uint8Array;
  /** Id of the restored session (default: the snapshotted session's). */
  session_id?: string;
  /** Backend to restore into (default: the snapshot's, if here, else the language's). */
  runtime?: string;
}

/** A snapshot as the API describes it. */
export interface SnapshotInfo {
  /** SHA3-256 of the snapshot's bytes (hex). */
  snapshot_id: string;
  /** Id of the session it was taken of. */
  session_id: string;
  bytes: number;
  backend: string;
  engine: string;
  language: Language;
  kinds: SnapshotStateKind[];
  /** Unix epoch ms. */
  created_at: number;
  /** Runs in its journal (0 without one). */
  journal_runs: number;
}

/** What a restore did. */
export interface RestoreInfo {
  session: SessionInfo;
  snapshot_id: string;
  /** `"image"` (the backend loaded its image) or `"journal"` (the journal was replayed). */
  restored_from: SnapshotStateKind;
  runtime: string;
  /** Journal runs replayed (0 for an image). */
  replayed_runs: number;
  /** Workspace files restored. */
  files: number;
  duration_ms: number;
}

/** What `POST /v1/sessions` takes. */
export interface CreateSessionInput {
  session_id?: string;
  language?: Language;
  limits?: Partial<SessionLimits> | null;
  runtime?: string;
  /** Side-effect classes the session's code may use (narrowed by the server's); default: the server's. */
  allowed_side_effects?: SideEffect[] | null;
}

/** A session as the API shows it: seed 004's `SessionMeta` plus extensions. */
export interface SessionInfo extends SessionMeta {
  runtime: string;
  /** `hibernated`: kept in the snapshot store; its next run restores it. */
  state: "idle" | "running" | "hibernated";
  queued_runs: number;
  run_count: number;
  /** Unix epoch ms at which the session expires if it stays idle. */
  expires_at: number;
  /** Side-effect classes the session's code may use. */
  allowed_side_effects: SideEffect[];
}

/** A run as `GET /v1/runs/{id}` shows it. */
export interface RunInfo {
  run_id: string;
  session_id: SessionId;
  state: "queued" | "running" | "waiting_for_approval" | "finished";
  /** Unix epoch ms the run was accepted. */
  created_at: number;
  /** The RunResult once finished, else null. */
  result: RunResult | null;
  /** Approvals the run waits for. */
  approvals: Approval[];
}

/** Callbacks of one run (for embedders; nothing on the wire sets them). */
export interface RunHooks {
  /** Output as the guest prints it (what `max_stdout_bytes` keeps), for live streams. */
  onOutput?: (stream: "stdout" | "stderr", text: string) => void;
}

/** What `POST /v1/runs` takes: a RunRequest where everything but `code` may be left out. */
export type RunInput = Partial<RunRequest> & { code: string };

interface SessionState {
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
interface HibernatedSession {
  meta: SessionMeta;
  runtimeId: string;
  allowedSideEffects: SideEffect[];
  runCount: number;
  snapshotId: string;
  /** The snapshot id was handed to a client: keep the snapshot when the session wakes. */
  shared: boolean;
}

interface RunState {
  id: string;
  session: SessionState;
  language: Language;
  code: string;
  inputs: JsonObject;
  limits: SessionLimits;
  validateOnly: boolean;
  returnSnapshot: boolean;
  onOutput: RunHooks["onOutput"];
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

const DAY_MS = 86_400_000;

/** See the module comment. */
export class SessionManager {
  readonly #runtimes: RuntimeRegistry;
  readonly #tools: ToolRegistry;
  readonly #defaults: SessionLimits;
  readonly #ceilings: SessionLimits;
  readonly #maxSessions: number;
  readonly #idleTtlMs: number;
  readonly #maxQueuedRuns: number;
  readonly #retentionMs: number;
  readonly #maxRetainedRuns: number;
  readonly #defaultLanguage: Language;
  readonly #allowedSideEffects: ReadonlySet<SideEffect>;
  readonly #onSessionDestroyed: ((sessionId: string) => void) | undefined;
  readonly #sessions = new Map<SessionId, SessionState>();
  readonly #creating = new Map<SessionId, Promise<SessionState>>();
  readonly #runs = new Map<string, RunState>();
  /** Ids of finished runs, oldest first (Map keeps insertion order). */
  readonly #finishedRuns = new Map<string, true>();
  readonly #sweeper: NodeJS.Timeout;
  readonly #hibernated = new Map<SessionId, HibernatedSession>();
  readonly #store: SnapshotStore;
  readonly #keyring: SnapshotKeyring;
  readonly #bounds: SnapshotBounds;
  readonly #maxJournalBytes: number;
  readonly #hibernateAfterMs: number | null;
  readonly #hibernateAboveRssBytes: number | null;
  #lastStoreGc = 0;
  #closing = false;
  /** Tool calls waiting for a person (`GET /v1/approvals`). */
  readonly approvals: ApprovalQueue;
  /** Typed declarations of the tools (`GET /v1/capabilities/stubs`, TypeScript type-checks). */
  readonly stubs: StubCache;
  /** The sessions' file workspaces. */
  readonly workspaces: WorkspaceRegistry;

  /** @throws SandboxError `LIMIT_EXCEEDS_CEILING` when a default is above its ceiling. */
  constructor(options: SessionManagerOptions) {
    this.#runtimes = options.runtimes;
    this.#tools = options.tools;
    this.#defaults = { ...options.defaults };
    this.#ceilings = { ...options.ceilings };
    assertWithinCeilings(this.#defaults, this.#ceilings);
    this.#maxSessions = options.maxSessions ?? 500;
    this.#idleTtlMs = options.sessionIdleTtlMs ?? 15 * 60_000;
    this.#maxQueuedRuns = options.maxQueuedRuns ?? 8;
    this.#retentionMs = options.runRetentionMs ?? 10 * 60_000;
    this.#maxRetainedRuns = Math.max(0, options.maxRetainedRuns ?? 10_000);
    this.#defaultLanguage = options.defaultLanguage ?? "python";
    this.#allowedSideEffects = new Set(options.allowedSideEffects ?? SIDE_EFFECTS);
    this.#onSessionDestroyed = options.onSessionDestroyed;
    const snapshots = options.snapshots ?? {
      store: new MemorySnapshotStore(),
      key: new Uint8Array(randomBytes(32)),
    };
    this.#store = snapshots.store;
    this.#keyring = { key: snapshots.key, allowUnsigned: snapshots.allowUnsigned ?? false };
    this.#bounds = { ...DEFAULT_SNAPSHOT_BOUNDS, ...snapshots.bounds };
    this.#maxJournalBytes = snapshots.maxJournalBytes ?? 32 * 1_048_576;
    this.#hibernateAfterMs = snapshots.hibernateAfterMs ?? null;
    this.#hibernateAboveRssBytes = snapshots.hibernateAboveRssBytes ?? null;
    this.stubs = new StubCache(options.tools);
    this.workspaces = options.workspaces ?? new WorkspaceRegistry();
    this.approvals = new ApprovalQueue({
      ttlMs: options.approvalTtlMs ?? 10 * 60_000,
      onPending: (approval) => this.#onApprovalPending(approval),
      onSettled: (approval) => this.#onApprovalSettled(approval),
    });
    const shortest = Math.min(this.#idleTtlMs, this.#hibernateAfterMs ?? this.#idleTtlMs);
    const sweepEveryMs = Math.max(250, Math.min(30_000, Math.floor(shortest / 4)));
    this.#sweeper = setInterval(() => void this.sweep(), sweepEveryMs);
    this.#sweeper.unref();
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
    return this.#hibernated.size;
  }

  /** The snapshot store. */
  get snapshotStore(): SnapshotStore {
    return this.#store;
  }

  /**
   * Creates a session (`POST /v1/sessions`).
   * @throws SandboxError `INVALID_SESSION_ID`, `SESSION_EXISTS`, `SESSION_LIMIT_REACHED`,
   *   `LIMIT_EXCEEDS_CEILING`, `UNSUPPORTED_LANGUAGE`, `UNKNOWN_RUNTIME`, `SERVICE_CLOSING`.
   */
  async createSession(input: CreateSessionInput = {}): Promise<SessionInfo> {
    const id = input.session_id === undefined ? randomUUID() : assertSessionId(input.session_id);
    if (this.#sessions.has(id) || this.#creating.has(id) || this.#hibernated.has(id)) {
      throw new SandboxError("SESSION_EXISTS", `Session '${id}' already exists.`);
    }
    const session = await this.#create(
      id,
      input.language ?? this.#defaultLanguage,
      input.limits,
      input.runtime,
      input.allowed_side_effects ?? null,
    );
    return this.#info(session);
  }

  /** @throws SandboxError `SESSION_NOT_FOUND`, `INVALID_SESSION_ID`. */
  getSession(id: string): SessionInfo {
    assertSessionId(id);
    const hibernated = this.#hibernated.get(id);
    if (hibernated) return this.#hibernatedInfo(hibernated);
    return this.#info(this.#require(id));
  }

  /** Every session, oldest first (hibernated ones included). */
  listSessions(): SessionInfo[] {
    return [
      ...[...this.#sessions.values()].map((session) => this.#info(session)),
      ...[...this.#hibernated.values()].map((session) => this.#hibernatedInfo(session)),
    ].sort((a, b) => a.created_at - b.created_at);
  }

  /**
   * Destroys a session: its running run is cancelled, queued runs end `cancelled`.
   * @throws SandboxError `SESSION_NOT_FOUND`, `INVALID_SESSION_ID`.
   */
  async destroySession(id: string): Promise<void> {
    assertSessionId(id);
    const hibernated = this.#hibernated.get(id);
    if (hibernated) {
      await this.#dropHibernated(hibernated);
      return;
    }
    const session = this.#require(id);
    await this.#destroy(session, "The session was destroyed.");
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
    if (this.#closing) throw new SandboxError("SERVICE_CLOSING", "The server is shutting down.");
    const runId = input.run_id ?? randomUUID();
    const sessionId = input.session_id ?? "default";
    const refuse = (error: ErrorObject) => {
      const done = Promise.resolve(this.#refusal(runId, sessionId, error));
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
      let existing = this.#sessions.get(sessionId) ?? (await this.#creating.get(sessionId));
      if (!existing && this.#hibernated.has(sessionId)) existing = await this.#wake(sessionId);
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
      } else {
        language = input.language ?? this.#defaultLanguage;
        // Check limits before creating anything, so a refused run leaves no session behind.
        mergeLimits(this.#defaults, input.limits, this.#ceilings, input.timeout_ms);
        session = await this.#create(sessionId, language, input.limits, input.runtime, null);
        limits = mergeLimits(session.meta.limits, null, this.#ceilings, input.timeout_ms);
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
    if (session.queue.length >= this.#maxQueuedRuns && session.running) {
      throw new SandboxError(
        "SESSION_BUSY",
        `Session '${sessionId}' has ${session.queue.length} runs waiting (the most allowed); retry when one ends.`,
      );
    }
    let resolve!: (result: RunResult) => void;
    const done = new Promise<RunResult>((settle) => {
      resolve = settle;
    });
    let notifyWaiting!: (result: RunResult) => void;
    const waiting = new Promise<RunResult>((settle) => {
      notifyWaiting = settle;
    });
    const run: RunState = {
      id: runId,
      session,
      language,
      code: input.code,
      inputs: input.inputs ?? {},
      limits,
      validateOnly: input.validate_only ?? false,
      returnSnapshot: input.return_snapshot ?? false,
      onOutput: hooks.onOutput,
      controller: new AbortController(),
      state: "queued",
      createdAt: Date.now(),
      enqueuedAt: performance.now(),
      finishedAt: 0,
      result: null,
      done,
      resolve,
      gateway: null,
      pendingApprovals: 0,
      waiting,
      notifyWaiting,
    };
    this.#runs.set(runId, run);
    session.queue.push(run);
    this.#touch(session);
    this.#pump(session);
    return { runId, done, waiting };
  }

  /**
   * Cancels a queued or running run; answers false when it had already finished.
   * @throws SandboxError `RUN_NOT_FOUND`.
   */
  cancelRun(runId: string): boolean {
    const run = this.#runs.get(runId);
    if (!run) throw new SandboxError("RUN_NOT_FOUND", `No run '${runId}'.`);
    if (run.state === "finished") return false;
    if (run.state === "queued") {
      const queue = run.session.queue;
      queue.splice(queue.indexOf(run), 1);
      this.#finish(
        run,
        this.#refusal(
          run.id,
          run.session.meta.id,
          errorObject("RUN_CANCELLED", "The run was cancelled before it started."),
          "cancelled",
        ),
      );
      return true;
    }
    run.controller.abort(new SandboxError("RUN_CANCELLED", "The run was cancelled."));
    return true;
  }

  /**
   * A run's state and, once finished, its result.
   * @throws SandboxError `RUN_NOT_FOUND`.
   */
  getRun(runId: string): RunInfo {
    const run = this.#runs.get(runId);
    if (!run)
      throw new SandboxError(
        "RUN_NOT_FOUND",
        `No run '${runId}' (finished runs are kept for a while only).`,
      );
    return {
      run_id: run.id,
      session_id: run.session.meta.id,
      state: run.state,
      created_at: run.createdAt,
      result: run.result,
      approvals: run.pendingApprovals > 0 ? this.approvals.pendingFor(run.id) : [],
    };
  }

  /**
   * Waits up to `waitMs` for a run to finish, then answers {@link getRun}.
   * @throws SandboxError `RUN_NOT_FOUND`.
   */
  async waitForRun(runId: string, waitMs: number): Promise<RunInfo> {
    const run = this.#runs.get(runId);
    if (!run) return this.getRun(runId);
    if (run.state !== "finished" && waitMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        run.done,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, waitMs);
        }),
      ]);
      clearTimeout(timer);
    }
    return this.getRun(runId);
  }

  /** Runs that have not finished, oldest first. */
  activeRuns(): RunInfo[] {
    return [...this.#runs.values()]
      .filter((run) => run.state !== "finished")
      .map((run) => this.getRun(run.id));
  }

  /**
   * Destroys expired idle sessions (hibernated ones too), hibernates idle sessions past
   * `hibernateAfterMs` or while the process's RSS is above `hibernateAboveRssBytes`, forgets
   * old finished runs and collects the snapshot store hourly (runs periodically).
   */
  async sweep(now = Date.now()): Promise<void> {
    for (const session of [...this.#sessions.values()]) {
      if (!this.#isIdle(session)) continue;
      const idleMs = now - session.meta.last_used_at;
      if (idleMs >= this.#idleTtlMs) await this.#destroy(session, "The session expired.");
      else if (this.#hibernateAfterMs !== null && idleMs >= this.#hibernateAfterMs) {
        await this.#hibernate(session).catch(() => false);
      }
    }
    for (const hibernated of [...this.#hibernated.values()]) {
      if (now - hibernated.meta.last_used_at >= this.#idleTtlMs)
        await this.#dropHibernated(hibernated);
    }
    if (this.#hibernateAboveRssBytes !== null) {
      while (process.memoryUsage.rss() > this.#hibernateAboveRssBytes) {
        if (!(await this.#hibernateLeastRecentlyUsed())) break;
      }
    }
    for (const [id, run] of this.#runs) {
      if (run.state === "finished" && now - run.finishedAt >= this.#retentionMs)
        this.#runs.delete(id);
    }
    if (now - this.#lastStoreGc >= 3_600_000) {
      this.#lastStoreGc = now;
      // Hibernated sessions' snapshots expire with their sessions, not with the store's TTL.
      const keep = new Set([...this.#hibernated.values()].map((session) => session.snapshotId));
      await this.#store.gc(now, keep).catch(() => 0);
    }
  }

  /**
   * Snapshots a session (`POST /v1/sessions/{id}/snapshot`) once its running run ends, stores
   * it and describes it. A hibernated session answers the snapshot it hibernated into.
   * @throws SandboxError `SESSION_NOT_FOUND`, `INVALID_SESSION_ID`, `SNAPSHOT_NOT_SUPPORTED`,
   *   `SNAPSHOT_TOO_LARGE`, `SNAPSHOT_STORE_FULL`.
   */
  async snapshotSession(id: string): Promise<SnapshotInfo> {
    assertSessionId(id);
    const hibernated = this.#hibernated.get(id);
    if (hibernated) {
      const bytes = await this.#store.get(hibernated.snapshotId);
      if (bytes) {
        hibernated.shared = true;
        return describeSnapshot(
          hibernated.snapshotId,
          bytes.byteLength,
          readSnapshot(bytes, this.#keyring, this.#bounds),
        );
      }
    }
    const session = this.#sessions.get(id) ?? (await this.#creating.get(id));
    if (!session || session.destroyed)
      throw new SandboxError("SESSION_NOT_FOUND", `No session '${id}'.`);
    const sealed = await this.#runTask(session, () => this.#snapshotNow(session));
    return describeSealed(sealed, session.journalGap ? 0 : session.journal.length);
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
    const started = performance.now();
    if (this.#closing) throw new SandboxError("SERVICE_CLOSING", "The server is shutting down.");
    if ((input.snapshot === undefined) === (input.snapshot_id === undefined)) {
      throw new SandboxError("INVALID_REQUEST", "Give either snapshot_id or the snapshot's bytes.");
    }
    const bytes = input.snapshot ?? (await this.getSnapshot(input.snapshot_id!));
    const read = readSnapshot(bytes, this.#keyring, this.#bounds);
    const id = assertSessionId(input.session_id ?? read.opened.header.session.id);
    if (this.#sessions.has(id) || this.#creating.has(id) || this.#hibernated.has(id)) {
      throw new SandboxError("SESSION_EXISTS", `Session '${id}' already exists.`, {
        hint: "Restore under another id with session_id, or destroy the existing session first.",
      });
    }
    let restored!: { session: SessionState; kind: SnapshotStateKind; replayed: number };
    const creation = (async () => {
      await this.#makeRoom(id);
      restored = await this.#materialize(id, read, input.runtime, null);
      this.#sessions.set(id, restored.session);
      return restored.session;
    })();
    this.#creating.set(id, creation);
    try {
      await creation;
    } finally {
      this.#creating.delete(id);
    }
    return {
      session: this.#info(restored.session),
      snapshot_id: read.opened.id,
      restored_from: restored.kind,
      runtime: restored.session.runtime.info.id,
      replayed_runs: restored.replayed,
      files: read.payload.workspace.length,
      duration_ms: Math.round((performance.now() - started) * 100) / 100,
    };
  }

  /**
   * A stored snapshot's bytes (`GET /v1/snapshots/{id}`).
   * @throws SandboxError `SNAPSHOT_NOT_FOUND`.
   */
  async getSnapshot(id: string): Promise<Uint8Array> {
    const bytes = /^[0-9a-f]{64}$/.test(id) ? await this.#store.get(id) : null;
    if (!bytes)
      throw new SandboxError("SNAPSHOT_NOT_FOUND", `No snapshot '${id}' is in the store.`);
    return bytes;
  }

  /**
   * Verifies snapshot bytes (digest, signature, header and payload) and stores them
   * (`POST /v1/snapshots`); storing the same bytes again is a no-op.
   * @throws SandboxError `SNAPSHOT_*` of a snapshot that does not verify, `SNAPSHOT_STORE_FULL`.
   */
  async putSnapshot(bytes: Uint8Array): Promise<SnapshotInfo> {
    const read = readSnapshot(bytes, this.#keyring, this.#bounds);
    await this.#store.put(read.opened.id, bytes);
    return describeSnapshot(read.opened.id, bytes.byteLength, read);
  }

  /**
   * Deletes a stored snapshot (`DELETE /v1/snapshots/{id}`).
   * @throws SandboxError `SNAPSHOT_NOT_FOUND`, `SNAPSHOT_IN_USE` (a hibernated session's).
   */
  async deleteSnapshot(id: string): Promise<void> {
    for (const hibernated of this.#hibernated.values()) {
      if (hibernated.snapshotId === id) {
        throw new SandboxError(
          "SNAPSHOT_IN_USE",
          `Snapshot '${id}' holds hibernated session '${hibernated.meta.id}'.`,
        );
      }
    }
    if (!(/^[0-9a-f]{64}$/.test(id) && (await this.#store.delete(id)))) {
      throw new SandboxError("SNAPSHOT_NOT_FOUND", `No snapshot '${id}' is in the store.`);
    }
  }

  /** Stored snapshots, newest first, and the store's usage (`GET /v1/snapshots`). */
  async listSnapshots(): Promise<{
    snapshots: { snapshot_id: string; bytes: number; stored_at: number }[];
    usage: { bytes: number; count: number; max_bytes: number };
  }> {
    const [entries, usage] = await Promise.all([this.#store.list(), this.#store.usage()]);
    return {
      snapshots: entries.map((entry) => ({
        snapshot_id: entry.id,
        bytes: entry.bytes,
        stored_at: Math.round(entry.stored_at),
      })),
      usage,
    };
  }

  /**
   * Hibernates an idle session now (what the sweeper does after `hibernateAfterMs`); answers
   * false when it is busy or cannot be snapshotted.
   * @throws SandboxError `SESSION_NOT_FOUND`, `INVALID_SESSION_ID`.
   */
  async hibernateSession(id: string): Promise<boolean> {
    assertSessionId(id);
    if (this.#hibernated.has(id)) return true;
    return this.#hibernate(this.#require(id));
  }

  /** Stops taking runs, cancels what runs, destroys every session. */
  async close(): Promise<void> {
    this.#closing = true;
    clearInterval(this.#sweeper);
    await Promise.allSettled(
      [...this.#sessions.values()].map((session) =>
        this.#destroy(session, "The server is shutting down."),
      ),
    );
  }

  async #create(
    id: SessionId,
    language: Language,
    requested: Partial<SessionLimits> | null | undefined,
    runtimeId: string | undefined,
    sideEffects: readonly SideEffect[] | null,
  ): Promise<SessionState> {
    if (this.#closing) throw new SandboxError("SERVICE_CLOSING", "The server is shutting down.");
    if (!this.#creating.has(id)) await this.#makeRoom(id);
    const pending = this.#creating.get(id);
    if (pending) return pending;
    if (this.#hibernated.has(id)) {
      throw new SandboxError("SESSION_EXISTS", `Session '${id}' already exists (hibernated).`);
    }
    this.#assertRoom(id);
    const runtime = this.#runtimes.resolve(language, runtimeId);
    const limits = mergeLimits(this.#defaults, requested, this.#ceilings);
    const creation = (async () => {
      await runtime.createSession(id, limits, language);
      const now = Date.now();
      const session: SessionState = {
        meta: {
          id,
          created_at: now,
          last_used_at: now,
          language,
          limits,
          snapshot_version: SNAPSHOT_VERSION,
        },
        runtime,
        allowedSideEffects: new Set(
          (sideEffects ?? [...this.#allowedSideEffects]).filter((effect) =>
            this.#allowedSideEffects.has(effect),
          ),
        ),
        cellHistory: [],
        cellHistoryChars: 0,
        inputNames: new Set(),
        running: null,
        queue: [],
        tasks: [],
        busy: false,
        runCount: 0,
        destroyed: false,
        journal: [],
        journalBytes: 0,
        journalGap: runtime.info.snapshotKinds.includes("journal")
          ? null
          : `backend '${runtime.info.id}' does not replay journals`,
      };
      this.#sessions.set(id, session);
      return session;
    })();
    this.#creating.set(id, creation);
    try {
      return await creation;
    } finally {
      this.#creating.delete(id);
    }
  }

  #require(id: string): SessionState {
    assertSessionId(id);
    const session = this.#sessions.get(id);
    if (!session) throw new SandboxError("SESSION_NOT_FOUND", `No session '${id}'.`);
    return session;
  }

  async #destroy(session: SessionState, why: string): Promise<void> {
    if (session.destroyed) return;
    session.destroyed = true;
    this.#sessions.delete(session.meta.id);
    for (const run of session.queue.splice(0)) {
      this.#finish(
        run,
        this.#refusal(run.id, session.meta.id, errorObject("RUN_CANCELLED", why), "cancelled"),
      );
    }
    session.running?.controller.abort(new SandboxError("RUN_CANCELLED", why));
    for (const task of session.tasks.splice(0)) {
      task.cancel(new SandboxError("SESSION_NOT_FOUND", `Session '${session.meta.id}': ${why}`));
    }
    session.journal = [];
    this.workspaces.delete(session.meta.id);
    await session.runtime.destroySession(session.meta.id).catch(() => false);
    try {
      this.#onSessionDestroyed?.(session.meta.id);
    } catch {
      // A listener's failure must not keep the session alive.
    }
  }

  #touch(session: SessionState): void {
    session.meta.last_used_at = Date.now();
  }

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
    void this.#execute(next).then((result) => {
      session.running = null;
      session.runCount += 1;
      this.#touch(session);
      this.#finish(next, result);
      this.#pump(session);
    });
  }

  async #execute(run: RunState): Promise<RunResult> {
    const started = performance.now();
    const queueMs = started - run.enqueuedAt;
    const session = run.session;
    const gateway = new ToolGateway({
      registry: this.#tools,
      sessionId: session.meta.id,
      runId: run.id,
      maxExternalCalls: run.limits.max_external_calls,
      deadline: started + run.limits.wall_ms,
      signal: run.controller.signal,
      allowedSideEffects: session.allowedSideEffects,
      approvals: this.approvals,
      session: { language: session.meta.language, runtime: session.runtime.info.id },
    });
    run.gateway = gateway;
    const determinism: RunDeterminism = { seed: freshSeed(), clock: null };
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
          this.#stopJournal(session, "the backend failed during a run, leaving its state unknown");
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
      outcome = await this.#typecheck(run, outcome);
    } else if (!run.validateOnly && outcome.status !== "validation_error") {
      this.#remember(run);
      if (reported) this.#journalRun(run, outcome, gateway, determinism);
    }
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
    let snapshotId: string | null = null;
    if (run.returnSnapshot && !run.validateOnly) {
      try {
        snapshotId = (await this.#snapshotNow(session)).id;
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

  /** Appends an executed run to its session's journal (or stops journaling, saying why). */
  #journalRun(
    run: RunState,
    outcome: RuntimeRunOutcome,
    gateway: ToolGateway,
    determinism: RunDeterminism,
  ): void {
    const session = run.session;
    if (outcome.sessionReset) {
      // The state this run leaves is empty: the journal starts again.
      session.journal = [];
      session.journalBytes = 0;
      session.journalGap = session.runtime.info.snapshotKinds.includes("journal")
        ? null
        : session.journalGap;
      return;
    }
    if (session.journalGap) return;
    if (!outcome.clock) {
      this.#stopJournal(
        session,
        `backend '${session.runtime.info.id}' does not report the clock its runs read`,
      );
      return;
    }
    if (!outcome.clock.complete) {
      this.#stopJournal(session, "a run read the clock more often than a journal records");
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
      this.#stopJournal(session, "a run's inputs cannot be journaled");
      return;
    }
    if (session.journalBytes + bytes > this.#maxJournalBytes) {
      this.#stopJournal(
        session,
        `its journal would pass ${this.#maxJournalBytes} bytes (maxJournalBytes)`,
      );
      return;
    }
    session.journal.push(entry);
    session.journalBytes += bytes;
  }

  #stopJournal(session: SessionState, why: string): void {
    session.journalGap ??= why;
    session.journal = [];
    session.journalBytes = 0;
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

  #isIdle(session: SessionState): boolean {
    return (
      !session.running &&
      !session.busy &&
      session.queue.length === 0 &&
      session.tasks.length === 0 &&
      !session.destroyed
    );
  }

  /** Snapshots a session that is not running and stores the snapshot. */
  async #snapshotNow(session: SessionState): Promise<SealedSnapshot> {
    const id = session.meta.id;
    const sealed = await captureSnapshot(
      {
        meta: { ...session.meta, limits: { ...session.meta.limits } },
        runtime: session.runtime,
        allowedSideEffects: SIDE_EFFECTS.filter((effect) => session.allowedSideEffects.has(effect)),
        journal: session.journalGap ? null : { runs: session.journal },
        journalGap: session.journalGap,
        workspace: this.workspaces.has(id) ? this.workspaces.get(id) : null,
      },
      this.#keyring.key,
      this.#bounds,
    );
    await this.#store.put(sealed.id, sealed.bytes);
    return sealed;
  }

  /**
   * Builds a session from a verified snapshot: loads the image or replays the journal into a
   * new backend session, restores the workspace, and answers the session (not yet
   * registered). On failure the backend session is destroyed and nothing remains.
   */
  async #materialize(
    id: SessionId,
    read: ReadSnapshot,
    runtimeId: string | undefined,
    hibernated: HibernatedSession | null,
  ): Promise<{ session: SessionState; kind: SnapshotStateKind; replayed: number }> {
    const header = read.opened.header;
    const plan = planRestore(read, this.#runtimes, runtimeId);
    // The snapshot's limits count as asked for: each must be within this server's ceilings.
    const limits = mergeLimits(header.limits, header.limits, this.#ceilings);
    const journal = read.payload.journal;
    for (const run of journal?.runs ?? []) mergeLimits(run.limits, run.limits, this.#ceilings);
    let workspace: Workspace | null = null;
    if (read.payload.workspace.length > 0) {
      workspace = restoreWorkspace(read.payload, this.workspaces.blank());
    }
    let kind = plan.kind;
    let replayed = 0;
    const runtime = plan.runtime;
    if (kind === "image") {
      try {
        await runtime.restoreSession(read.payload.image!.bytes, id);
      } catch (error) {
        // An image the backend refuses falls back to the journal, when there is one.
        if (!journal || !runtime.info.snapshotKinds.includes("journal")) throw error;
        await runtime.destroySession(id).catch(() => false);
        kind = "journal";
      }
    }
    if (kind === "journal") {
      await runtime.createSession(id, limits, header.language);
      try {
        await replayJournal(
          runtime,
          id,
          journal!,
          this.#tools.names(),
          new AbortController().signal,
        );
      } catch (error) {
        await runtime.destroySession(id).catch(() => false);
        throw error;
      }
      replayed = journal!.runs.length;
    }
    const now = Date.now();
    const session: SessionState = {
      meta: {
        id,
        created_at: hibernated?.meta.created_at ?? header.session.created_at,
        last_used_at: hibernated?.meta.last_used_at ?? now,
        language: header.language,
        limits,
        snapshot_version: SNAPSHOT_VERSION,
      },
      runtime,
      allowedSideEffects: new Set(
        read.payload.session.allowed_side_effects.filter((effect) =>
          this.#allowedSideEffects.has(effect),
        ),
      ),
      cellHistory: [],
      cellHistoryChars: 0,
      inputNames: new Set(),
      running: null,
      queue: [],
      tasks: [],
      busy: false,
      runCount: hibernated?.runCount ?? 0,
      destroyed: false,
      journal: journal ? [...journal.runs] : [],
      journalBytes: 0,
      journalGap: journal ? null : "it was restored from an image without a journal",
    };
    for (const run of session.journal) {
      session.journalBytes += JSON.stringify(run).length;
      this.#remember({ session, language: run.language, code: run.code, inputs: run.inputs });
    }
    if (workspace) this.workspaces.set(id, workspace);
    return { session, kind, replayed };
  }

  /** Sessions in the backends or being made, other than `id`. */
  #occupied(id: SessionId): number {
    return this.#sessions.size + this.#creating.size - (this.#creating.has(id) ? 1 : 0);
  }

  /**
   * Makes room for session `id` in the backends: at `maxSessions`, hibernates the least
   * recently used idle session when hibernation is on.
   * @throws SandboxError `SESSION_LIMIT_REACHED` when there is no room.
   */
  async #makeRoom(id: SessionId): Promise<void> {
    if (this.#occupied(id) < this.#maxSessions) return;
    if (this.#hibernateAfterMs !== null) await this.#hibernateLeastRecentlyUsed();
    this.#assertRoom(id);
  }

  /** @throws SandboxError `SESSION_LIMIT_REACHED`. */
  #assertRoom(id: SessionId): void {
    if (this.#occupied(id) >= this.#maxSessions) {
      throw new SandboxError(
        "SESSION_LIMIT_REACHED",
        `This server holds its maximum of ${this.#maxSessions} sessions.`,
        { hint: "Destroy a session you no longer need, or wait for idle ones to expire." },
      );
    }
  }

  /**
   * Snapshots an idle session into the store and evicts it from its backend; answers false
   * when it became busy, or cannot be snapshotted (it then stays as it is).
   */
  async #hibernate(session: SessionState): Promise<boolean> {
    if (!this.#isIdle(session)) return false;
    if (session.journalGap && !session.runtime.info.snapshotKinds.includes("image")) return false;
    return this.#runTask(session, async () => {
      if (session.queue.length > 0 || session.destroyed) return false;
      const sealed = await this.#snapshotNow(session);
      if (session.queue.length > 0 || session.destroyed) return false;
      const id = session.meta.id;
      // From here on nothing awaits until the session is hibernated: a run that arrives next
      // finds it hibernated and wakes it.
      session.destroyed = true;
      this.#sessions.delete(id);
      this.#hibernated.set(id, {
        meta: { ...session.meta, limits: { ...session.meta.limits } },
        runtimeId: session.runtime.info.id,
        allowedSideEffects: SIDE_EFFECTS.filter((effect) => session.allowedSideEffects.has(effect)),
        runCount: session.runCount,
        snapshotId: sealed.id,
        shared: false,
      });
      this.workspaces.delete(id);
      await session.runtime.destroySession(id).catch(() => false);
      return true;
    });
  }

  /** Hibernates the least recently used idle session that can be; answers whether one was. */
  async #hibernateLeastRecentlyUsed(): Promise<boolean> {
    const candidates = [...this.#sessions.values()]
      .filter((session) => this.#isIdle(session))
      .sort((a, b) => a.meta.last_used_at - b.meta.last_used_at);
    for (const session of candidates.slice(0, 8)) {
      if (await this.#hibernate(session).catch(() => false)) return true;
    }
    return false;
  }

  /**
   * Restores a hibernated session under its own id (its next run, or a snapshot of it).
   * @throws SandboxError what the restore failed with; the session is then gone (its
   *   snapshot stays in the store).
   */
  #wake(id: SessionId): Promise<SessionState> {
    const pending = this.#creating.get(id);
    if (pending) return pending;
    const hibernated = this.#hibernated.get(id);
    if (!hibernated)
      return Promise.reject(new SandboxError("SESSION_NOT_FOUND", `No session '${id}'.`));
    const waking = (async () => {
      if (this.#closing) throw new SandboxError("SERVICE_CLOSING", "The server is shutting down.");
      await this.#makeRoom(id);
      const bytes = await this.#store.get(hibernated.snapshotId);
      if (!bytes) {
        throw new SandboxError(
          "SNAPSHOT_NOT_FOUND",
          `Its snapshot ${hibernated.snapshotId} is no longer in the store.`,
        );
      }
      const read = readSnapshot(bytes, this.#keyring, this.#bounds);
      const { session } = await this.#materialize(id, read, hibernated.runtimeId, hibernated);
      this.#hibernated.delete(id);
      this.#sessions.set(id, session);
      return session;
    })();
    this.#creating.set(id, waking);
    return waking.then(
      async (session) => {
        this.#creating.delete(id);
        if (!hibernated.shared) await this.#store.delete(hibernated.snapshotId).catch(() => false);
        return session;
      },
      (error: unknown) => {
        this.#creating.delete(id);
        this.#hibernated.delete(id);
        const code = isSandboxError(error) ? error.code : "INTERNAL_ERROR";
        const message = error instanceof Error ? error.message : String(error);
        throw new SandboxError(
          code,
          `Session '${id}' could not be woken from hibernation (its snapshot ${hibernated.snapshotId} is kept): ${message}`,
        );
      },
    );
  }

  async #dropHibernated(hibernated: HibernatedSession): Promise<void> {
    const id = hibernated.meta.id;
    if (this.#hibernated.get(id) !== hibernated) return;
    this.#hibernated.delete(id);
    if (!hibernated.shared) await this.#store.delete(hibernated.snapshotId).catch(() => false);
    try {
      this.#onSessionDestroyed?.(id);
    } catch {
      // A listener's failure must not keep the session alive.
    }
  }

  #hibernatedInfo(hibernated: HibernatedSession): SessionInfo {
    const meta = hibernated.meta;
    return {
      ...meta,
      limits: { ...meta.limits },
      runtime: hibernated.runtimeId,
      state: "hibernated",
      queued_runs: 0,
      run_count: hibernated.runCount,
      allowed_side_effects: [...hibernated.allowedSideEffects],
      expires_at: Math.min(meta.last_used_at + this.#idleTtlMs, meta.last_used_at + 365 * DAY_MS),
    };
  }

  /** Keeps what the type-checker needs to know of a run that executed. */
  #remember(run: Pick<RunState, "session" | "language" | "code" | "inputs">): void {
    const session = run.session;
    for (const name of Object.keys(run.inputs)) session.inputNames.add(name);
    if (run.language !== "javascript" && run.language !== "typescript") return;
    session.cellHistory.push({ code: run.code, language: run.language });
    session.cellHistoryChars += run.code.length;
    // Bounded: the oldest cells fall off (their globals are then unknown to the checker).
    while (session.cellHistory.length > 200 || session.cellHistoryChars > 2_000_000) {
      session.cellHistoryChars -= session.cellHistory.shift()!.code.length;
    }
  }

  /** Type-checks a TypeScript cell for validate_only; type errors make it a validation_error. */
  async #typecheck(run: RunState, outcome: RuntimeRunOutcome): Promise<RuntimeRunOutcome> {
    const toolNames = new Set(this.#tools.names());
    const globals: Record<string, string> = {};
    const session = run.session;
    for (const cell of session.cellHistory) {
      if (cell.language !== "javascript" && cell.language !== "typescript") continue;
      for (const name of declaredGlobals(cell.code, cell.language)) globals[name] = "any";
    }
    for (const name of session.inputNames) globals[name] = "any";
    for (const [name, value] of Object.entries(run.inputs)) globals[name] = typeOfJson(value);
    for (const name of Object.keys(globals)) {
      if (
        toolNames.has(name) ||
        name === "tools" ||
        name === "ToolError" ||
        !/^[A-Za-z_$][\w$]*$/.test(name)
      ) {
        delete globals[name];
      }
    }
    let found: Diagnostic[];
    try {
      found = await typecheckCell({
        code: run.code,
        stubs: await this.stubs.get("typescript"),
        globals,
      });
    } catch (error) {
      return {
        ...outcome,
        diagnostics: [
          ...outcome.diagnostics,
          {
            severity: "warning",
            code: "TYPECHECK_UNAVAILABLE",
            message: `Types were not checked: ${error instanceof Error ? error.message : String(error)}`,
            hint: null,
            span: null,
          },
        ],
      };
    }
    if (found.length === 0) return outcome;
    const first = found[0]!;
    return {
      ...outcome,
      status: "validation_error",
      error: errorObject("TYPE_ERROR", first.message, { span: first.span }),
      diagnostics: [...found, ...outcome.diagnostics],
    };
  }

  #onApprovalPending(approval: Approval): void {
    const run = this.#runs.get(approval.run_id);
    if (!run || run.state === "finished") return;
    run.pendingApprovals += 1;
    if (run.pendingApprovals === 1) {
      run.state = "waiting_for_approval";
      run.session.runtime.pauseClock?.(run.id, true);
    }
    run.notifyWaiting(this.#waitingResult(run));
  }

  #onApprovalSettled(approval: Approval): void {
    const run = this.#runs.get(approval.run_id);
    if (!run || run.pendingApprovals === 0) return;
    run.pendingApprovals -= 1;
    if (run.pendingApprovals === 0 && run.state === "waiting_for_approval") {
      run.state = "running";
      run.session.runtime.pauseClock?.(run.id, false);
    }
  }

  /** The RunResult answered while a run waits for approvals (the run goes on). */
  #waitingResult(run: RunState): RunResult {
    const pending = this.approvals.pendingFor(run.id);
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

  #finish(run: RunState, result: RunResult): void {
    run.state = "finished";
    run.result = result;
    run.finishedAt = Date.now();
    run.resolve(result);
    this.#finishedRuns.set(run.id, true);
    // Bounded memory under load: past the cap the oldest finished runs are forgotten early.
    while (this.#finishedRuns.size > this.#maxRetainedRuns) {
      const oldest = this.#finishedRuns.keys().next().value;
      if (oldest === undefined) break;
      this.#forgetRun(oldest);
    }
  }

  #forgetRun(id: string): void {
    this.#finishedRuns.delete(id);
    this.#runs.delete(id);
  }

  #refusal(
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
      diagnostics: [
        {
          severity: "error",
          code: error.code,
          message: error.message,
          hint: error.hint,
          span: error.span,
        },
      ],
      external_calls: [],
      snapshot_id: null,
      metrics: { duration_ms: 0, memory_peak_bytes: 0, instructions: 0, external_calls_count: 0 },
      error,
      run_id: runId,
      session_id: sessionId,
    };
  }

  #info(session: SessionState): SessionInfo {
    return {
      ...session.meta,
      limits: { ...session.meta.limits },
      runtime: session.runtime.info.id,
      state: session.running ? "running" : "idle",
      queued_runs: session.queue.length,
      run_count: session.runCount,
      allowed_side_effects: SIDE_EFFECTS.filter((effect) => session.allowedSideEffects.has(effect)),
      expires_at: Math.min(
        session.meta.last_used_at + this.#idleTtlMs,
        session.meta.last_used_at + 365 * DAY_MS,
      ),
    };
  }
}

function isCapacityError(error: SandboxError): boolean {
  return (
    error.code === "SESSION_LIMIT_REACHED" ||
    error.code === "SERVICE_CLOSING" ||
    error.code === "SESSION_BUSY"
  );
}

function hostOutcome(status: RunStatus, error: ErrorObject): RuntimeRunOutcome {
  return {
    status,
    result: null,
    stdout: "",
    stderr: "",
    diagnostics: [
      {
        severity: "error",
        code: error.code,
        message: error.message,
        hint: error.hint,
        span: error.span,
      },
    ],
    error,
    memoryPeakBytes: 0,
    instructions: 0,
    cpuMs: 0,
    sessionReset: false,
  };
}

function clampU32(value: number): number {
  return Math.min(4_294_967_295, Math.max(0, Math.round(value)));
}

/** Describes a snapshot from its verified contents. */
function describeSnapshot(id: string, bytes: number, read: ReadSnapshot): SnapshotInfo {
  return describeHeader(id, bytes, read.opened.header, read.payload.journal?.runs.length ?? 0);
}

/** Describes a snapshot just taken. */
function describeSealed(sealed: SealedSnapshot, journalRuns: number): SnapshotInfo {
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
