/**
 * Snapshots of a session manager's sessions (docs/snapshots.md): taking them between runs,
 * keeping them in the {@link SnapshotStore}, restoring them as new sessions, and hibernation
 * — idle sessions snapshotted to the store and evicted from their backend, woken by whatever
 * names them next. The manager owns one {@link SessionSnapshots}; it reaches the live
 * sessions through the {@link SessionPool} and the session queues through `runTask`.
 *
 * @module
 */
import { randomBytes } from "node:crypto";
import { assertSessionId } from "../contract/ids.ts";
import type { SessionId } from "../contract/types.ts";
import { isSandboxError, SandboxError } from "../errors.ts";
import type { SnapshotKeyring } from "../snapshot/envelope.ts";
import {
  captureSnapshot,
  DEFAULT_SNAPSHOT_BOUNDS,
  readSnapshot,
  type SealedSnapshot,
  type SnapshotBounds,
} from "../snapshot/snapshots.ts";
import { MemorySnapshotStore, type SnapshotStore } from "../snapshot/store.ts";
import type { HibernationIndex, HibernationResume } from "./hibernation-index.ts";
import type { SessionManager } from "./manager.ts";
import { type MaterializeContext, type Materialized, materialize } from "./materialize.ts";
import { describeSealed, describeSnapshot } from "./results.ts";
import type { PoolHibernation, SessionPool } from "./sessions.ts";
import {
  type HibernatedSession,
  hibernatedInfo,
  isIdle,
  SessionMovedError,
  type SessionState,
  sideEffectsOf,
} from "./state.ts";
import type {
  RestoreInfo,
  RestoreInput,
  SessionInfo,
  SnapshotInfo,
  SnapshotOptions,
} from "./types.ts";

/** Wake failures that say nothing about the snapshot: the session stays hibernated. */
const TRANSIENT_WAKE_FAILURES = new Set<string>([
  "SESSION_LIMIT_REACHED",
  "SERVICE_CLOSING",
  "SNAPSHOT_STORE_FULL",
]);

/** Idle sessions hibernated per sweep while RSS is above `hibernateAboveRssBytes`. */
const RSS_EVICTIONS_PER_SWEEP = 4;

/** Options of {@link SessionSnapshots}. */
export interface SessionSnapshotsOptions extends MaterializeContext {
  /** The manager's snapshot settings (default: an in-memory store, a random key, no hibernation). */
  snapshots: SnapshotOptions | undefined;
  /** The live sessions. */
  pool: SessionPool;
  /** Idle time (ms) after which a session, hibernated or not, is destroyed. */
  idleTtlMs: number;
  /** Runs `work` on a session between runs: after the running run, before queued ones. */
  runTask: <T>(session: SessionState, work: () => Promise<T>) => Promise<T>;
}

/** Snapshots, restores and hibernation of a session manager (see the module comment). */
export class SessionSnapshots implements PoolHibernation {
  readonly #hibernated = new Map<SessionId, HibernatedSession>();
  readonly #store: SnapshotStore;
  readonly #keyring: SnapshotKeyring;
  readonly #bounds: SnapshotBounds;
  readonly #maxJournalBytes: number;
  readonly #hibernateAfterMs: number | null;
  readonly #hibernateAboveRssBytes: number | null;
  readonly #maxHibernated: number;
  readonly #options: SessionSnapshotsOptions;
  readonly #pool: SessionPool;
  readonly #index: HibernationIndex | null;
  readonly #onIndexError: (error: unknown) => void;
  #indexWrite: Promise<void> | null = null;
  #indexDirty = false;
  #lastStoreGc = 0;

  constructor(options: SessionSnapshotsOptions) {
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
    this.#maxHibernated = snapshots.maxHibernatedSessions ?? 10_000;
    this.#options = options;
    this.#pool = options.pool;
    this.#index = snapshots.hibernationIndex ?? null;
    this.#onIndexError = snapshots.onHibernationIndexError ?? (() => {});
  }

  /** The snapshot store. */
  get store(): SnapshotStore {
    return this.#store;
  }

  /** Bytes a session's journal may grow to (`maxJournalBytes`). */
  get maxJournalBytes(): number {
    return this.#maxJournalBytes;
  }

  /** Idle time (ms) after which a session hibernates, or null (never). */
  get hibernateAfterMs(): number | null {
    return this.#hibernateAfterMs;
  }

  /** Whether sessions hibernate to make room (`hibernateAfterMs` is set). */
  get hibernatesForRoom(): boolean {
    return this.#hibernateAfterMs !== null;
  }

  /** Number of hibernated sessions. */
  get hibernatedCount(): number {
    return this.#hibernated.size;
  }

  /** Whether `id` names a hibernated session. */
  isHibernated(id: SessionId): boolean {
    return this.#hibernated.has(id);
  }

  /** A hibernated session as the API shows it, or undefined when `id` is not hibernated. */
  info(id: SessionId): SessionInfo | undefined {
    const hibernated = this.#hibernated.get(id);
    return hibernated ? hibernatedInfo(hibernated, this.#options.idleTtlMs) : undefined;
  }

  /** Every hibernated session as the API shows it. */
  list(): SessionInfo[] {
    return [...this.#hibernated.values()].map((session) =>
      hibernatedInfo(session, this.#options.idleTtlMs),
    );
  }

  /** Snapshots a session that is not running and stores the snapshot. */
  async snapshot(session: SessionState): Promise<SealedSnapshot> {
    const id = session.meta.id;
    const workspaces = this.#options.workspaces;
    const sealed = await captureSnapshot(
      {
        meta: { ...session.meta, limits: { ...session.meta.limits } },
        runtime: session.runtime,
        allowedSideEffects: sideEffectsOf(session),
        journal: session.journalGap ? null : { runs: session.journal },
        journalGap: session.journalGap,
        workspace: workspaces.has(id) ? workspaces.get(id) : null,
      },
      this.#keyring.key,
      this.#bounds,
    );
    await this.#store.put(sealed.id, sealed.bytes);
    return sealed;
  }

  /** See {@link SessionManager.snapshotSession}. */
  async snapshotSession(id: string): Promise<SnapshotInfo> {
    assertSessionId(id);
    const hibernated = this.#hibernated.get(id);
    if (hibernated) {
      const bytes = await this.#store.get(hibernated.snapshotId);
      if (bytes) {
        if (!hibernated.shared) {
          hibernated.shared = true;
          this.#saveIndex();
        }
        return describeSnapshot(
          hibernated.snapshotId,
          bytes.byteLength,
          readSnapshot(bytes, this.#keyring, this.#bounds),
        );
      }
    }
    const session = this.#pool.get(id) ?? (await this.#pool.pending(id));
    if (!session || session.destroyed)
      throw new SandboxError("SESSION_NOT_FOUND", `No session '${id}'.`);
    let sealed: SealedSnapshot;
    try {
      sealed = await this.#options.runTask(session, () => this.snapshot(session));
    } catch (error) {
      // It hibernated before this task's turn: its hibernation snapshot is the answer.
      if (error instanceof SessionMovedError) return this.snapshotSession(id);
      throw error;
    }
    return describeSealed(sealed, session.journalGap ? 0 : session.journal.length);
  }

  /** See {@link SessionManager.restoreSession}. */
  async restore(input: RestoreInput): Promise<RestoreInfo> {
    const started = performance.now();
    const pool = this.#pool;
    if (pool.closing) throw new SandboxError("SERVICE_CLOSING", "The server is shutting down.");
    if ((input.snapshot === undefined) === (input.snapshot_id === undefined)) {
      throw new SandboxError("INVALID_REQUEST", "Give either snapshot_id or the snapshot's bytes.");
    }
    const bytes = input.snapshot ?? (await this.get(input.snapshot_id!));
    const read = readSnapshot(bytes, this.#keyring, this.#bounds);
    const id = assertSessionId(input.session_id ?? read.opened.header.session.id);
    // Again after the store read: a close that began meanwhile does not wait for this restore.
    if (pool.closing) throw new SandboxError("SERVICE_CLOSING", "The server is shutting down.");
    if (pool.has(id) || this.#hibernated.has(id)) {
      throw new SandboxError("SESSION_EXISTS", `Session '${id}' already exists.`, {
        hint: "Restore under another id with session_id, or destroy the existing session first.",
      });
    }
    let restored!: Materialized;
    const creation = (async () => {
      await pool.makeRoom(id);
      restored = await materialize(id, read, input.runtime, null, this.#options);
      pool.add(restored.session);
      return restored.session;
    })();
    pool.track(id, creation);
    try {
      await creation;
    } finally {
      pool.untrack(id);
    }
    return {
      session: pool.info(restored.session),
      snapshot_id: read.opened.id,
      restored_from: restored.kind,
      runtime: restored.session.runtime.info.id,
      replayed_runs: restored.replayed,
      files: read.payload.workspace.length,
      duration_ms: Math.round((performance.now() - started) * 100) / 100,
    };
  }

  /** See {@link SessionManager.getSnapshot}. */
  async get(id: string): Promise<Uint8Array> {
    const bytes = /^[0-9a-f]{64}$/.test(id) ? await this.#store.get(id) : null;
    if (!bytes)
      throw new SandboxError("SNAPSHOT_NOT_FOUND", `No snapshot '${id}' is in the store.`);
    return bytes;
  }

  /** See {@link SessionManager.putSnapshot}. */
  async put(bytes: Uint8Array): Promise<SnapshotInfo> {
    const read = readSnapshot(bytes, this.#keyring, this.#bounds);
    await this.#store.put(read.opened.id, bytes);
    return describeSnapshot(read.opened.id, bytes.byteLength, read);
  }

  /** See {@link SessionManager.deleteSnapshot}. */
  async delete(id: string): Promise<void> {
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

  /** See {@link SessionManager.listSnapshots}. */
  async stored(): Promise<{
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
   * Snapshots an idle session into the store and evicts it from its backend; answers false
   * when it became busy, or cannot be snapshotted (it then stays as it is).
   */
  async hibernate(session: SessionState): Promise<boolean> {
    if (!isIdle(session)) return false;
    if (session.journalGap && !session.runtime.info.snapshotKinds.includes("image")) return false;
    if (this.#hibernated.size >= this.#maxHibernated) return false;
    return this.#options
      .runTask(session, async () => {
        if (session.queue.length > 0 || session.destroyed) return false;
        const sealed = await this.snapshot(session);
        if (session.queue.length > 0 || session.destroyed) return false;
        const id = session.meta.id;
        // From here on nothing awaits until the session is hibernated: a run that arrives next
        // finds it hibernated and wakes it.
        session.destroyed = true;
        this.#pool.remove(id);
        this.#hibernated.set(id, {
          meta: { ...session.meta, limits: { ...session.meta.limits } },
          runtimeId: session.runtime.info.id,
          allowedSideEffects: sideEffectsOf(session),
          runCount: session.runCount,
          snapshotId: sealed.id,
          shared: false,
          broken: null,
        });
        this.#saveIndex();
        // Tasks that queued behind this one ask again, and find the session hibernated.
        for (const task of session.tasks.splice(0)) task.cancel(new SessionMovedError(id));
        this.#options.workspaces.delete(id);
        await session.runtime.destroySession(id).catch(() => false);
        return true;
      })
      .catch((error: unknown) => {
        if (error instanceof SessionMovedError) return false;
        throw error;
      });
  }

  /** Hibernates the least recently used idle session that can be; answers whether one was. */
  async hibernateLeastRecentlyUsed(): Promise<boolean> {
    const candidates = this.#pool
      .list()
      .filter((session) => isIdle(session))
      .sort((a, b) => a.meta.last_used_at - b.meta.last_used_at);
    for (const session of candidates.slice(0, 8)) {
      if (await this.hibernate(session).catch(() => false)) return true;
    }
    return false;
  }

  /**
   * Restores a hibernated session under its own id (its next run, or a snapshot of it).
   * @throws SandboxError what the restore failed with; the session is then gone (its
   *   snapshot stays in the store).
   */
  wake(id: SessionId): Promise<SessionState> {
    const pool = this.#pool;
    const pending = pool.pending(id);
    if (pending) return pending;
    const hibernated = this.#hibernated.get(id);
    if (!hibernated)
      return Promise.reject(new SandboxError("SESSION_NOT_FOUND", `No session '${id}'.`));
    if (hibernated.broken) {
      return Promise.reject(new SandboxError(hibernated.broken.code, hibernated.broken.message));
    }
    const waking = (async () => {
      if (pool.closing) throw new SandboxError("SERVICE_CLOSING", "The server is shutting down.");
      await pool.makeRoom(id);
      const bytes = await this.#store.get(hibernated.snapshotId);
      if (!bytes) {
        throw new SandboxError(
          "SNAPSHOT_NOT_FOUND",
          `Its snapshot ${hibernated.snapshotId} is no longer in the store.`,
        );
      }
      const read = readSnapshot(bytes, this.#keyring, this.#bounds);
      const { session } = await materialize(
        id,
        read,
        hibernated.runtimeId,
        hibernated,
        this.#options,
      );
      if (this.#hibernated.get(id) !== hibernated || pool.closing) {
        // Destroyed while it woke, or the server began to close (the session then stays
        // hibernated, its snapshot and index record kept): what was built goes.
        this.#options.workspaces.delete(id);
        await session.runtime.destroySession(id).catch(() => false);
        if (pool.closing) throw new SandboxError("SERVICE_CLOSING", "The server is shutting down.");
        throw new SandboxError("SESSION_NOT_FOUND", `Session '${id}' was destroyed while it woke.`);
      }
      this.#hibernated.delete(id);
      this.#saveIndex();
      pool.add(session);
      return session;
    })();
    pool.track(id, waking);
    return waking.then(
      async (session) => {
        pool.untrack(id);
        if (!hibernated.shared) await this.#store.delete(hibernated.snapshotId).catch(() => false);
        return session;
      },
      (error: unknown) => {
        pool.untrack(id);
        const code = isSandboxError(error) ? error.code : "INTERNAL_ERROR";
        const message = error instanceof Error ? error.message : String(error);
        // Room, shutdown and I/O can pass: the session stays hibernated for a later try.
        if (TRANSIENT_WAKE_FAILURES.has(code) || !isSandboxError(error)) throw error;
        const failure = new SandboxError(
          code,
          `Session '${id}' could not be woken from hibernation: ${message} Its snapshot ${hibernated.snapshotId} is kept; destroy the session to start over.`,
        );
        if (this.#hibernated.get(id) === hibernated) {
          hibernated.broken = { code: failure.code, message: failure.message };
          hibernated.shared = true;
          this.#saveIndex();
        }
        throw failure;
      },
    );
  }

  /** Destroys a hibernated session: its snapshot goes too, unless it was handed to a client. */
  async drop(id: SessionId): Promise<void> {
    const hibernated = this.#hibernated.get(id);
    if (hibernated) await this.#drop(hibernated);
  }

  /**
   * The sweeper's part: destroys hibernated sessions idle for `idleTtlMs`, then hibernates
   * idle sessions, least recently used first, while the process's RSS is above
   * `hibernateAboveRssBytes`.
   */
  async sweep(now: number): Promise<void> {
    for (const hibernated of [...this.#hibernated.values()]) {
      if (now - hibernated.meta.last_used_at >= this.#options.idleTtlMs)
        await this.#drop(hibernated);
    }
    if (this.#hibernateAboveRssBytes !== null) {
      // RSS falls slowly after memory is freed: a few per sweep, measured again next sweep.
      for (let evicted = 0; evicted < RSS_EVICTIONS_PER_SWEEP; evicted++) {
        if (process.memoryUsage.rss() <= this.#hibernateAboveRssBytes) break;
        if (!(await this.hibernateLeastRecentlyUsed())) break;
      }
    }
  }

  /** Collects the snapshot store, at most hourly; hibernated sessions' snapshots are kept. */
  async collect(now: number): Promise<void> {
    if (now - this.#lastStoreGc >= 3_600_000) {
      this.#lastStoreGc = now;
      // Hibernated sessions' snapshots expire with their sessions, not with the store's TTL.
      const keep = new Set([...this.#hibernated.values()].map((session) => session.snapshotId));
      await this.#store.gc(now, keep).catch(() => 0);
    }
  }

  /**
   * Takes back the sessions the hibernation index names (a server starting on the data dir
   * of one that stopped): each becomes hibernated again, to wake on its next use. Records of
   * sessions idle past `idleTtlMs`, of ids already in use and past `maxHibernatedSessions`
   * are dropped with their snapshots (unless shared); records whose snapshot is no longer in
   * the store are dropped. Without an index, does nothing.
   * @throws the index's read error (a file that exists but cannot be read).
   */
  async resume(now: number = Date.now()): Promise<HibernationResume> {
    const report: HibernationResume = { resumed: 0, expired: 0, missing: 0, rejected: 0 };
    if (!this.#index) return report;
    const { sessions, rejected } = await this.#index.load();
    report.rejected = rejected;
    if (sessions.length === 0 && rejected === 0) return report;
    const stored = new Set((await this.#store.list()).map((entry) => entry.id));
    for (const session of sessions) {
      const id = session.meta.id;
      if (now - session.meta.last_used_at >= this.#options.idleTtlMs) {
        report.expired += 1;
        if (!session.shared) await this.#store.delete(session.snapshotId).catch(() => false);
      } else if (!stored.has(session.snapshotId)) {
        report.missing += 1;
      } else if (
        this.#pool.has(id) ||
        this.#hibernated.has(id) ||
        this.#hibernated.size >= this.#maxHibernated
      ) {
        report.rejected += 1;
        if (!session.shared) await this.#store.delete(session.snapshotId).catch(() => false);
      } else {
        this.#hibernated.set(id, session);
        report.resumed += 1;
      }
    }
    this.#saveIndex();
    await this.flushIndex();
    return report;
  }

  /**
   * Hibernates idle sessions, most recently used first, until `deadline` (a
   * `performance.now()` time): what the manager does when it closes, so that the sessions
   * outlive the process (with a hibernation index). Answers how many hibernated.
   */
  async hibernateIdle(deadline: number): Promise<number> {
    const candidates = this.#pool
      .list()
      .filter((session) => isIdle(session))
      .sort((a, b) => b.meta.last_used_at - a.meta.last_used_at);
    let hibernated = 0;
    for (const session of candidates) {
      if (performance.now() >= deadline) break;
      const done = await Promise.race([
        this.hibernate(session).catch(() => false),
        new Promise<false>((resolve) =>
          setTimeout(resolve, Math.max(0, deadline - performance.now()), false).unref(),
        ),
      ]);
      if (done) hibernated += 1;
    }
    return hibernated;
  }

  /** Waits until the hibernation index holds the current state (or its last write failed). */
  async flushIndex(): Promise<void> {
    while (this.#indexWrite) await this.#indexWrite;
  }

  /** Saves the hibernation index soon; writes coalesce, one at a time. */
  #saveIndex(): void {
    const index = this.#index;
    if (!index) return;
    this.#indexDirty = true;
    if (this.#indexWrite) return;
    this.#indexWrite = (async () => {
      while (this.#indexDirty) {
        this.#indexDirty = false;
        try {
          await index.save([...this.#hibernated.values()]);
        } catch (error) {
          this.#onIndexError(error);
        }
      }
      // In the same step as the last check of #indexDirty: a change after it starts a write.
      this.#indexWrite = null;
    })();
  }

  async #drop(hibernated: HibernatedSession): Promise<void> {
    const id = hibernated.meta.id;
    if (this.#hibernated.get(id) !== hibernated) return;
    this.#hibernated.delete(id);
    this.#saveIndex();
    if (!hibernated.shared) await this.#store.delete(hibernated.snapshotId).catch(() => false);
    this.#pool.notifyDestroyed(id);
  }
}
