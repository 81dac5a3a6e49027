/**
 * The session manager's public shapes: its options, what its calls take (`RunInput`,
 * `CreateSessionInput`, `RestoreInput`) and what they answer (`SessionInfo`, `RunInfo`,
 * `SnapshotInfo`, `RestoreInfo`), as the HTTP API puts them on the wire. The manager's
 * internal state is in ./state.ts.
 *
 * @module
 */

import type {
  Language,
  RunRequest,
  RunResult,
  SessionId,
  SessionLimits,
  SessionMeta,
  SideEffect,
} from "../contract/types.ts";
import type { RuntimeRegistry } from "../runtime/registry.ts";
import type { SnapshotStateKind } from "../snapshot/envelope.ts";
import type { DEFAULT_SNAPSHOT_BOUNDS, SnapshotBounds } from "../snapshot/snapshots.ts";
import type { SnapshotStore } from "../snapshot/store.ts";
import type { Approval } from "../tools/approvals.ts";
import type { ToolRegistry } from "../tools/registry.ts";
import type { WorkspaceRegistry } from "../workspace.ts";
import type { HibernationIndex } from "./hibernation-index.ts";
import type { SessionManager } from "./manager.ts";

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
  /** Most sessions kept hibernated at once; past it, sessions stay in memory (default 10,000). */
  maxHibernatedSessions?: number;
  /**
   * Where hibernated sessions are recorded so that they outlive the process (the server's: a
   * FsHibernationIndex at `<dataDir>/hibernated.json` when `SANDBOX_SNAPSHOT_KEY` is set);
   * `SessionManager.resumeHibernated` reads it back. Default: none (hibernated sessions end
   * with the process).
   */
  hibernationIndex?: HibernationIndex;
  /** Called when the hibernation index cannot be written (the sessions stay hibernated in memory). */
  onHibernationIndexError?: (error: unknown) => void;
  /**
   * Time `SessionManager.close` spends hibernating idle sessions, most recently used first,
   * before it destroys the rest, in ms (default 0: none). Useful with a hibernation index:
   * the sessions then survive a restart.
   */
  hibernateOnCloseMs?: number;
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
  /**
   * The run leaves nothing the session's later runs rely on (it runs in a scope of its own, as
   * runner commands do): it is not journaled, and the session's journal stays as it was.
   */
  ephemeral?: boolean;
}

/** What `POST /v1/runs` takes: a RunRequest where everything but `code` may be left out. */
export type RunInput = Partial<RunRequest> & { code: string };
