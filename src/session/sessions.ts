/**
 * The sessions in their backends and those being made: creating a session on the backend
 * of its language within `maxSessions`, finding one, destroying one. Hibernated sessions
 * belong to ./snapshots.ts; the pool asks it about them through {@link PoolHibernation}
 * (whether an id is hibernated, and to hibernate an idle session when the pool is full).
 *
 * @module
 */

import { assertSessionId } from "../contract/ids.ts";
import {
  type Language,
  type SessionId,
  type SessionLimits,
  type SideEffect,
  SNAPSHOT_VERSION,
} from "../contract/types.ts";
import { errorObject, SandboxError } from "../errors.ts";
import type { RuntimeRegistry } from "../runtime/registry.ts";
import type { WorkspaceRegistry } from "../workspace.ts";
import { mergeLimits } from "./limits.ts";
import { refusal } from "./results.ts";
import type { RunTable } from "./runs.ts";
import { newSessionState, type SessionState, sessionInfo } from "./state.ts";
import type { SessionInfo } from "./types.ts";

/** What the pool asks of hibernation (./snapshots.ts), which owns hibernated sessions. */
export interface PoolHibernation {
  /** Whether `id` names a hibernated session. */
  isHibernated(id: SessionId): boolean;
  /** Whether an idle session is hibernated to make room at `maxSessions` (hibernation is on). */
  readonly hibernatesForRoom: boolean;
  /** Hibernates the least recently used idle session that can be; answers whether one was. */
  hibernateLeastRecentlyUsed(): Promise<boolean>;
}

/** Options of {@link SessionPool}. Times in ms. */
export interface SessionPoolOptions {
  runtimes: RuntimeRegistry;
  /** Limits of a new session before its creator's requests. */
  defaults: SessionLimits;
  /** Highest value each limit may be asked for. */
  ceilings: SessionLimits;
  /** Most sessions in the backends or being made at once. */
  maxSessions: number;
  /** Idle time after which a session expires (for {@link SessionInfo}'s `expires_at`). */
  idleTtlMs: number;
  /** Side-effect classes any session may use; a session's are narrowed to them. */
  allowedSideEffects: ReadonlySet<SideEffect>;
  /** The sessions' workspaces; a destroyed session's is dropped. */
  workspaces: WorkspaceRegistry;
  /** The runs: a destroyed session's queued runs end `cancelled` there. */
  runs: RunTable;
  /** Called with a session's id after it is destroyed (its listener's failures are ignored). */
  onSessionDestroyed: ((sessionId: string) => void) | undefined;
  /** Hibernation, asked for lazily (it is made after the pool). */
  hibernation: () => PoolHibernation;
}

/** The live sessions of a session manager (see the module comment). */
export class SessionPool {
  readonly #sessions = new Map<SessionId, SessionState>();
  readonly #creating = new Map<SessionId, Promise<SessionState>>();
  readonly #options: SessionPoolOptions;
  #closing = false;

  constructor(options: SessionPoolOptions) {
    this.#options = options;
  }

  /** Number of sessions in their backends (not those being made). */
  get size(): number {
    return this.#sessions.size;
  }

  /** Whether the manager is shutting down: nothing new is made. */
  get closing(): boolean {
    return this.#closing;
  }

  /** The sessions in their backends, oldest first (a copy). */
  list(): SessionState[] {
    return [...this.#sessions.values()];
  }

  /** The session `id` if it is in its backend, else undefined. */
  get(id: SessionId): SessionState | undefined {
    return this.#sessions.get(id);
  }

  /** The session `id` being made (created, restored or woken), else undefined. */
  pending(id: SessionId): Promise<SessionState> | undefined {
    return this.#creating.get(id);
  }

  /** Whether `id` is in its backend or being made (hibernated sessions are not counted). */
  has(id: SessionId): boolean {
    return this.#sessions.has(id) || this.#creating.has(id);
  }

  /** Makes a session visible under its id (it is in its backend now). */
  add(session: SessionState): void {
    this.#sessions.set(session.meta.id, session);
  }

  /** Removes a session from the pool without touching its backend (it hibernates). */
  remove(id: SessionId): void {
    this.#sessions.delete(id);
  }

  /** Marks `id` as being made until {@link untrack}; calls for it wait for `creation`. */
  track(id: SessionId, creation: Promise<SessionState>): void {
    this.#creating.set(id, creation);
  }

  /** Ends {@link track}. */
  untrack(id: SessionId): void {
    this.#creating.delete(id);
  }

  /** @throws SandboxError `SESSION_NOT_FOUND`, `INVALID_SESSION_ID`. */
  require(id: string): SessionState {
    assertSessionId(id);
    const session = this.#sessions.get(id);
    if (!session) throw new SandboxError("SESSION_NOT_FOUND", `No session '${id}'.`);
    return session;
  }

  /**
   * Creates a session on the backend of `language` (or `runtimeId`), with the defaults
   * overlaid with `requested` limits, and side-effect classes `sideEffects` (null: the
   * server's).
   * @throws SandboxError `SESSION_EXISTS` (the id is live, hibernated or being made),
   *   `SESSION_LIMIT_REACHED`,
   *   `LIMIT_EXCEEDS_CEILING`, `UNSUPPORTED_LANGUAGE`, `UNKNOWN_RUNTIME`, `SERVICE_CLOSING`.
   */
  async create(
    id: SessionId,
    language: Language,
    requested: Partial<SessionLimits> | null | undefined,
    runtimeId: string | undefined,
    sideEffects: readonly SideEffect[] | null,
  ): Promise<SessionState> {
    if (this.#closing) throw new SandboxError("SERVICE_CLOSING", "The server is shutting down.");
    // A create, restore or wake of this id under way: the id is taken. (A caller that wants
    // that session awaits `pending(id)` and checks it is the session it asked for.)
    if (this.#creating.has(id) || this.#sessions.has(id)) {
      throw new SandboxError("SESSION_EXISTS", `Session '${id}' already exists.`);
    }
    if (this.#options.hibernation().isHibernated(id)) {
      throw new SandboxError("SESSION_EXISTS", `Session '${id}' already exists (hibernated).`);
    }
    const { runtimes, defaults, ceilings, allowedSideEffects } = this.#options;
    const runtime = runtimes.resolve(language, runtimeId);
    const limits = mergeLimits(defaults, requested, ceilings);
    const creation = (async () => {
      // Registered before room is made, so a second create of this id waits for this one.
      await this.makeRoom(id);
      await runtime.createSession(id, limits, language);
      const now = Date.now();
      const session = newSessionState({
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
          (sideEffects ?? [...allowedSideEffects]).filter((effect) =>
            allowedSideEffects.has(effect),
          ),
        ),
        runCount: 0,
        journal: [],
        // Empty: it restores anywhere until a run that keeps state runs on a backend without journals.
        journalGap: null,
      });
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

  /**
   * Makes room for session `id` in the backends: at `maxSessions`, hibernates the least
   * recently used idle session when hibernation is on.
   * @throws SandboxError `SESSION_LIMIT_REACHED` when there is no room.
   */
  async makeRoom(id: SessionId): Promise<void> {
    if (this.#occupied(id) < this.#options.maxSessions) return;
    const hibernation = this.#options.hibernation();
    if (hibernation.hibernatesForRoom) await hibernation.hibernateLeastRecentlyUsed();
    this.assertRoom(id);
  }

  /** @throws SandboxError `SESSION_LIMIT_REACHED`. */
  assertRoom(id: SessionId): void {
    if (this.#occupied(id) >= this.#options.maxSessions) {
      throw new SandboxError(
        "SESSION_LIMIT_REACHED",
        `This server holds its maximum of ${this.#options.maxSessions} sessions.`,
        { hint: "Destroy a session you no longer need, or wait for idle ones to expire." },
      );
    }
  }

  /**
   * Destroys a session: queued runs end `cancelled`, the running one is aborted, pending
   * tasks fail with `SESSION_NOT_FOUND`, and its workspace and backend session are dropped.
   * `why` is what the cancelled runs are told.
   */
  async destroy(session: SessionState, why: string): Promise<void> {
    if (session.destroyed) return;
    session.destroyed = true;
    this.#sessions.delete(session.meta.id);
    for (const run of session.queue.splice(0)) {
      this.#options.runs.finish(
        run,
        refusal(run.id, session.meta.id, errorObject("RUN_CANCELLED", why), "cancelled"),
      );
    }
    session.running?.controller.abort(new SandboxError("RUN_CANCELLED", why));
    for (const task of session.tasks.splice(0)) {
      task.cancel(new SandboxError("SESSION_NOT_FOUND", `Session '${session.meta.id}': ${why}`));
    }
    session.journal = [];
    this.#options.workspaces.delete(session.meta.id);
    await session.runtime.destroySession(session.meta.id).catch(() => false);
    this.notifyDestroyed(session.meta.id);
  }

  /** Tells `onSessionDestroyed` that session `id` is gone. */
  notifyDestroyed(id: SessionId): void {
    try {
      this.#options.onSessionDestroyed?.(id);
    } catch {
      // A listener's failure must not keep the session alive.
    }
  }

  /** A session as the API shows it. */
  info(session: SessionState): SessionInfo {
    return sessionInfo(session, this.#options.idleTtlMs);
  }

  /** Stops making sessions and destroys every one. */
  async close(): Promise<void> {
    this.#closing = true;
    // Sessions being made (created, restored, woken) finish first, then go with the rest,
    // so none is left in a backend after close.
    await Promise.allSettled([...this.#creating.values()]);
    await Promise.allSettled(
      this.list().map((session) => this.destroy(session, "The server is shutting down.")),
    );
  }

  /** Sessions in the backends or being made, other than `id`. */
  #occupied(id: SessionId): number {
    return this.#sessions.size + this.#creating.size - (this.#creating.has(id) ? 1 : 0);
  }
}
