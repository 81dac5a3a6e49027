/**
 * The runtime interface every backend implements: a TypeScript port of seed 004's
 * `LanguageRuntime` trait, plus what a backend declares about itself ({@link RuntimeInfo}).
 *
 * A backend lives in `runtimes/<id>/`, imports only `src/index.ts`, and is registered into a
 * {@link RuntimeRegistry} by the server at start-up. Guest failures come back as a
 * {@link RuntimeRunOutcome}; host failures reject with a `SandboxError`.
 *
 * @module
 */
import type {
  CallStatus,
  Diagnostic,
  ErrorObject,
  JsonObject,
  JsonValue,
  Language,
  RunStatus,
  SessionId,
  SessionLimits,
} from "../contract/types.ts";

/** How faithfully a backend enforces one limit. */
export type LimitSupport = "exact" | "approximate" | "unsupported";

/** Kinds of snapshot state (see DESIGN "Snapshots"). */
export type SnapshotKind = "image" | "journal";

/** What a backend declares about itself (served by `GET /v1/runtimes`). */
export interface RuntimeInfo {
  /** Backend id, e.g. `"quickjs"`. */
  readonly id: string;
  /** Languages it runs. */
  readonly languages: readonly Language[];
  /** Exact engine build, e.g. `"quickjs 2025-09-13 (quickjs-emscripten 0.32.0, release-sync)"`. */
  readonly engine: string;
  /** Where guest code runs: `"worker_thread"`, `"child_process"` or `"in_process"`. */
  readonly isolation: "worker_thread" | "child_process" | "in_process";
  /** Per limit: exact or approximate, with a one-line note (docs/limits.md has the detail). */
  readonly limits: { readonly [K in keyof SessionLimits]: { support: LimitSupport; note: string } };
  /** Snapshot kinds it can produce and restore. */
  readonly snapshotKinds: readonly SnapshotKind[];
}

/**
 * A tool call's answer as a backend hands it to guest code. Values cross as JSON text so
 * they can be copied into any engine (or over a thread/process boundary) unchanged.
 */
export type ToolCallReply =
  | { ok: true; valueJson: string }
  | {
      ok: false;
      status: CallStatus;
      /** UPPER_SNAKE: one of ours (docs/errors.md) or the tool's own. */
      code: string;
      message: string;
      /** The call ended the run (e.g. past `max_external_calls`): stop the guest now. */
      fatal: boolean;
    };

/** The tools a run may call, as a backend sees them. Implemented by the tool gateway. */
export interface ToolBridge {
  /** Callable tool names, sorted. */
  readonly names: readonly string[];
  /** Changes whenever the set of tools changes. */
  readonly version: number;
  /** Calls a tool with JSON-encoded positional and keyword arguments. Never rejects. */
  call(name: string, argsJson: string, kwargsJson: string): Promise<ToolCallReply>;
}

/** One run as the session manager hands it to a backend. */
export interface RuntimeRunRequest {
  runId: string;
  sessionId: SessionId;
  language: Language;
  code: string;
  /** Bound as globals before the code runs. */
  inputs: JsonObject;
  /** Effective limits of this run (request over session, under ceilings; `timeout_ms` applied). */
  limits: SessionLimits;
  /** Parse/strip only: run nothing, call no tool. */
  validateOnly: boolean;
  tools: ToolBridge;
  /** Aborted when the run is cancelled; the backend ends it with status `cancelled`. */
  signal: AbortSignal;
  /**
   * The run's sources of nondeterminism, for journals (see src/snapshot/journal.ts): the seed
   * of `Math.random`, and when replaying, the clock values guest code must read (in order).
   * Absent: the backend seeds freshly and reads the real clock.
   */
  determinism?: RunDeterminism;
  /**
   * Called as guest code prints, with the text the capture kept (nothing past
   * `max_stdout_bytes`), for live output streams. The outcome still carries all of it.
   */
  onOutput?: (stream: "stdout" | "stderr", text: string) => void;
  /**
   * Polled while guest code runs synchronously, when the transport cannot deliver `signal`'s
   * abort event meanwhile (a worker thread busy in guest code reads a shared flag here).
   */
  cancelRequested?: () => boolean;
}

/** Seed and clock of a run (see {@link RuntimeRunRequest.determinism}). */
export interface RunDeterminism {
  /** Four unsigned 32-bit integers. */
  seed: [number, number, number, number];
  /** Clock values to return, in order (replay); null reads the real clock (and records it). */
  clock: number[] | null;
}

/** What a backend reports about a finished run. The manager adds calls, ids and timings. */
export interface RuntimeRunOutcome {
  status: RunStatus;
  result: JsonValue | null;
  stdout: string;
  stderr: string;
  diagnostics: Diagnostic[];
  error: ErrorObject | null;
  /** Engine-reported peak memory in bytes (meaning per backend: docs/limits.md). */
  memoryPeakBytes: number;
  /** Instructions executed, where the engine counts them; else 0. */
  instructions: number;
  /** CPU milliseconds spent executing guest code. */
  cpuMs: number;
  /** The session's state was discarded (memory exhausted, engine crash); it stays usable, empty. */
  sessionReset: boolean;
  /**
   * Clock values guest code read, in order, when the backend pins the clock (backends whose
   * `snapshotKinds` include "journal"); `complete` is false when more were read than could be
   * recorded, or a replay read past the recorded ones.
   */
  clock?: { values: number[]; complete: boolean };
}

/**
 * A language backend (seed: `LanguageRuntime`). All methods are safe to call concurrently
 * for different sessions; the session manager never runs two runs of one session at once.
 */
export interface LanguageRuntime {
  /** What this backend is and supports. Seed: `language()` (here a list). */
  readonly info: RuntimeInfo;
  /**
   * Creates an empty session (seed: `create_session`).
   * @throws SandboxError `SESSION_EXISTS` when the id is taken in this backend.
   */
  createSession(sessionId: SessionId, limits: SessionLimits, language: Language): Promise<void>;
  /** Runs one cell (seed: `run`). Guest failures resolve; host failures reject (`SESSION_NOT_FOUND`). */
  run(request: RuntimeRunRequest): Promise<RuntimeRunOutcome>;
  /** Destroys a session; answers whether it existed (seed: `destroy_session`). */
  destroySession(sessionId: SessionId): Promise<boolean>;
  /** Ids of this backend's sessions (seed: `list_sessions`). */
  listSessions(): Promise<SessionId[]>;
  /**
   * Serializes a session's state (seed: `snapshot_session`).
   * @throws SandboxError `SNAPSHOT_NOT_SUPPORTED` where the backend cannot.
   */
  snapshotSession(sessionId: SessionId): Promise<Uint8Array>;
  /**
   * Restores a session from bytes (seed: `restore_session`); answers its id. `limits` are the
   * session's limits as the restoring server accepted them (within its ceilings); absent,
   * the backend uses what the bytes say.
   * @throws SandboxError `SNAPSHOT_NOT_SUPPORTED` where the backend cannot.
   */
  restoreSession(
    snapshot: Uint8Array,
    sessionId?: SessionId,
    limits?: SessionLimits,
  ): Promise<SessionId>;
  /** Whether `snapshot`'s header says this backend can restore it (seed: `can_restore_snapshot`). */
  canRestoreSnapshot(snapshot: Uint8Array): boolean;
  /**
   * Pauses (or resumes) a run's wall clock while it waits for a person to approve a tool call;
   * time paused does not count toward `wall_ms`. Optional: a backend without it keeps counting.
   */
  pauseClock?(runId: string, paused: boolean): void;
  /**
   * Whether a session's state was lost since its last run without a run of its own being to
   * blame (its engine worker died under a neighbour): its next run would start empty. The
   * session manager then rebuilds it from its journal first. Optional.
   */
  sessionLost?(sessionId: SessionId): boolean;
  /** Stops workers and frees every session. */
  close(): Promise<void>;
  /**
   * Live figures of the backend (pool sizes, memory per interpreter, …), JSON-serializable;
   * `GET /v1/runtimes` serves them as `stats`. Optional: backends without any omit it.
   */
  stats?(): object;
}
