/**
 * isolated-vm sessions in the current process: the engine each child process of the
 * isolated-vm backend serves (see ./child.ts and ./index.ts). Usable in any Node process
 * started with `--no-node-snapshot`; the backend keeps it out of the server process because a
 * V8 crash, or isolated-vm's own "catastrophic" errors, end the whole process.
 *
 * One session = one V8 isolate (its own heap, capped by `memoryLimit` = the session's
 * memory_mb) and one context in it, holding the bootstrap (./guest.ts), the shared guest
 * prelude and the globals of every cell run so far. Guest code runs on isolated-vm's thread
 * pool, never on this process's main thread, which stays free to answer callbacks, tool
 * replies, cancellation and the limit guards (./run.ts).
 *
 * Failures that end more than one run:
 * - an isolate disposed under a slice that does not return (a long native operation) leaves
 *   a thread computing; if it is still stuck `stuckThreadLimitMs` later, {@link
 *   IsolatedVmEngineOptions.onFatal} is called (the child process ends itself, so its CPU and
 *   memory come back; its other sessions are reset by the pool);
 * - isolated-vm's `onCatastrophicError` (V8 out of memory outside the heap limit, an isolate
 *   that failed to terminate): the affected run ends (`MEMORY_LIMIT` for an out-of-memory, else
 *   `ENGINE_CRASHED`), then `onFatal` is called: isolated-vm says the process cannot go on.
 *
 * @module
 */
import ivm from "isolated-vm";
import {
  type CompiledCell,
  canRestoreWith,
  compileCell,
  errorObject,
  GUEST_PRELUDE,
  type JsLanguage,
  type Language,
  type LanguageRuntime,
  type RuntimeInfo,
  type RuntimeRunOutcome,
  type RuntimeRunRequest,
  SandboxError,
  type SessionId,
  type SessionLimits,
  validationOutcome,
} from "../../src/index.ts";
import { BOOTSTRAP_FILENAME, GUEST_BOOTSTRAP, REFUSED } from "./guest.ts";
import { DEFAULT_DISPOSE_GRACE_MS, DEFAULT_STUCK_THREAD_LIMIT_MS } from "./index.ts";
import { ActiveRun, type RunSession } from "./run.ts";
import { PRELUDE_FILENAME } from "./stack.ts";

/** Smallest `memoryLimit` isolated-vm accepts, in MiB. */
export const MIN_MEMORY_MB = 8;
/** Cells whose source maps a session keeps, to map stack frames of functions from older cells. */
const KEPT_CELLS = 64;
/** Time the bootstrap and prelude may take in a new isolate, in ms (no user code runs then). */
const SETUP_TIMEOUT_MS = 5_000;

/** Options of {@link IsolatedVmEngine}. */
export interface IsolatedVmEngineOptions {
  /** What the backend declares about itself. */
  info: RuntimeInfo;
  /** Time a slice may outlive its budget before its isolate is disposed, in ms (default 250). */
  disposeGraceMs?: number;
  /**
   * Time a disposed isolate's thread may stay stuck in a native operation before `onFatal`
   * is called, in ms (default 2,000).
   */
  stuckThreadLimitMs?: number;
  /**
   * Called when this process should end (a catastrophic isolated-vm error, a thread stuck past
   * `stuckThreadLimitMs`), after the affected run has been answered. Default: nothing (an
   * embedder decides).
   */
  onFatal?: (reason: string) => void;
}

interface Session extends RunSession {
  readonly language: Language;
  readonly context: ivm.Context;
  cellCount: number;
  readonly cells: Map<string, CompiledCell>;
  activeRun: ActiveRun | null;
  /** The session was destroyed while a run was active: dispose it when the run ends. */
  destroyAfterRun: boolean;
}

/** Sessions of this process, each in its own isolate. See the module comment. */
export class IsolatedVmEngine implements LanguageRuntime {
  readonly info: RuntimeInfo;
  readonly #sessions = new Map<SessionId, Session>();
  readonly #disposeGraceMs: number;
  readonly #stuckThreadLimitMs: number;
  readonly #onFatal: (reason: string) => void;
  /** Slices of disposed isolates that have not returned yet, with when they were abandoned. */
  readonly #stuck = new Map<Promise<unknown>, number>();
  #stuckCheck: NodeJS.Timeout | undefined;
  /** Why this process must end (set by a catastrophic error); runs then skip resets. */
  #dying: string | null = null;

  constructor(options: IsolatedVmEngineOptions) {
    this.info = options.info;
    this.#disposeGraceMs = options.disposeGraceMs ?? DEFAULT_DISPOSE_GRACE_MS;
    this.#stuckThreadLimitMs = options.stuckThreadLimitMs ?? DEFAULT_STUCK_THREAD_LIMIT_MS;
    this.#onFatal = options.onFatal ?? (() => {});
  }

  /** Threads still computing inside disposed isolates (for tests and health). */
  get stuckThreads(): number {
    return this.#stuck.size;
  }

  /**
   * Creates a session: a new isolate (`memoryLimit` = `limits.memory_mb`, fixed for the
   * session's life) and context holding the bootstrap and the guest prelude.
   * @throws SandboxError `SESSION_EXISTS`; `LIMIT_EXCEEDS_CEILING` when `memory_mb` is below
   *   {@link MIN_MEMORY_MB}; `ENGINE_CRASHED` when the isolate cannot be set up.
   */
  async createSession(
    sessionId: SessionId,
    limits: SessionLimits,
    language: Language,
  ): Promise<void> {
    if (this.#sessions.has(sessionId)) {
      throw new SandboxError("SESSION_EXISTS", `Session '${sessionId}' already exists.`);
    }
    if (limits.memory_mb < MIN_MEMORY_MB) {
      throw new SandboxError(
        "LIMIT_EXCEEDS_CEILING",
        `memory_mb ${limits.memory_mb} is below the ${MIN_MEMORY_MB} MiB an isolated-vm isolate needs.`,
      );
    }
    const session = await this.#newSession(sessionId, limits, language);
    if (this.#sessions.has(sessionId)) {
      disposeIsolate(session);
      throw new SandboxError("SESSION_EXISTS", `Session '${sessionId}' already exists.`);
    }
    this.#sessions.set(sessionId, session);
  }

  /**
   * Runs one cell (see ./run.ts). Guest failures, limits and crashes of the isolate resolve as
   * outcomes; a session whose isolate was lost is replaced by an empty one (`SESSION_RESET`).
   * @throws SandboxError `SESSION_NOT_FOUND`, `SESSION_BUSY` (a run is active).
   */
  async run(request: RuntimeRunRequest): Promise<RuntimeRunOutcome> {
    let session = this.#sessions.get(request.sessionId);
    if (!session) {
      throw new SandboxError("SESSION_NOT_FOUND", `No session '${request.sessionId}'.`);
    }
    // isolated-vm disposes an isolate that crossed its memory limit whenever V8 notices,
    // which can be after the run that allocated ended.
    const lostBefore = session.isolate.isDisposed && !session.activeRun;
    if (lostBefore) {
      await this.#reset(session);
      session = this.#sessions.get(request.sessionId);
      if (!session) {
        throw new SandboxError("SESSION_NOT_FOUND", `No session '${request.sessionId}'.`);
      }
    }
    if (session.activeRun) {
      throw new SandboxError("SESSION_BUSY", `Session '${request.sessionId}' is running.`);
    }
    if (request.language === "python") {
      return validationOutcome(
        errorObject(
          "LANGUAGE_MISMATCH",
          "This isolated-vm session runs JavaScript and TypeScript only.",
        ),
      );
    }
    session.cellCount += 1;
    const compiled = compileCell(
      request.code,
      request.language as JsLanguage,
      `cell-${session.cellCount}.js`,
    );
    if (!compiled.ok) return validationOutcome(compiled.error);
    const cell = compiled.cell;

    const run = new ActiveRun(session, request, {
      disposeGraceMs: this.#disposeGraceMs,
      disposeIsolate: (target, busy) => this.#disposeBusy(target as Session, busy),
    });
    session.activeRun = run;
    let outcome: RuntimeRunOutcome;
    try {
      outcome = request.validateOnly ? await run.validate(cell) : await run.execute(cell);
    } catch (error) {
      outcome = await run.hostFailure(error);
    } finally {
      run.finish();
      session.activeRun = null;
    }
    if (!request.validateOnly) rememberCell(session, cell);
    if (lostBefore) {
      outcome.diagnostics.push({
        severity: "info",
        code: "SESSION_RESET",
        message:
          "The session's isolate had been discarded at its memory limit; this run started from an empty session.",
        hint: "Values from earlier runs are gone; recreate them.",
        span: null,
      });
    }
    if (this.#dying !== null) {
      // The answer is posted a few microtasks after this returns; end the process after it.
      const reason = this.#dying;
      setTimeout(() => this.#onFatal(reason), 0);
      return outcome;
    }
    if (session.destroyAfterRun) {
      disposeIsolate(session);
    } else if (outcome.sessionReset) {
      await this.#reset(session);
    }
    return outcome;
  }

  /** Disposes a session's isolate (a run in progress is cancelled first); answers whether it existed. */
  async destroySession(sessionId: SessionId): Promise<boolean> {
    const session = this.#sessions.get(sessionId);
    if (!session) return false;
    this.#sessions.delete(sessionId);
    if (session.activeRun) {
      session.destroyAfterRun = true;
      session.activeRun.stop("cancelled");
    } else {
      disposeIsolate(session);
    }
    return true;
  }

  async listSessions(): Promise<SessionId[]> {
    return [...this.#sessions.keys()];
  }

  async snapshotSession(_sessionId: SessionId): Promise<Uint8Array> {
    throw new SandboxError(
      "SNAPSHOT_NOT_SUPPORTED",
      "isolated-vm makes no image of a session; its snapshots are journals (docs/snapshots.md).",
    );
  }

  async restoreSession(_snapshot: Uint8Array, _sessionId?: SessionId): Promise<SessionId> {
    throw new SandboxError(
      "SNAPSHOT_NOT_SUPPORTED",
      "isolated-vm restores no image; the session manager replays a snapshot's journal instead.",
    );
  }

  canRestoreSnapshot(snapshot: Uint8Array): boolean {
    return canRestoreWith(this.info, snapshot);
  }

  async close(): Promise<void> {
    for (const id of [...this.#sessions.keys()]) await this.destroySession(id);
    clearInterval(this.#stuckCheck);
  }

  /** Replaces a session's isolate with a fresh, empty one (same id and creation limits). */
  async #reset(session: Session): Promise<void> {
    disposeIsolate(session);
    if (this.#sessions.get(session.id) !== session) return;
    this.#sessions.delete(session.id);
    try {
      this.#sessions.set(
        session.id,
        await this.#newSession(session.id, session.limits, session.language),
      );
    } catch {
      // The session is gone; its next run answers SESSION_NOT_FOUND.
    }
  }

  async #newSession(
    sessionId: SessionId,
    limits: SessionLimits,
    language: Language,
  ): Promise<Session> {
    const holder: { session: Session | null } = { session: null };
    const run = () => holder.session?.activeRun ?? null;
    const isolate = new ivm.Isolate({
      memoryLimit: limits.memory_mb,
      onCatastrophicError: (message: string) => this.#catastrophe(holder.session, message),
    });
    try {
      const context = await isolate.createContext();
      const prelude = await context.eval(GUEST_PRELUDE, {
        filename: PRELUDE_FILENAME,
        reference: true,
        timeout: SETUP_TIMEOUT_MS,
      });
      const bootstrap = await context.eval(GUEST_BOOTSTRAP, {
        filename: BOOTSTRAP_FILENAME,
        reference: true,
        timeout: SETUP_TIMEOUT_MS,
      });
      // Host callbacks: arguments arrive as copies; none of them throws into the isolate.
      const entry = (await bootstrap.apply(
        undefined,
        [
          prelude.derefInto(),
          new ivm.Callback((stream: unknown, text: unknown, dropped: unknown) =>
            run()?.print(stream, text, dropped),
          ),
          new ivm.Callback(
            (id: unknown, name: unknown, args: unknown, kwargs: unknown) =>
              run()?.startCall(id, name, args, kwargs) ?? REFUSED,
          ),
          new ivm.Callback((delayMs: unknown) => run()?.setTimer(delayMs) ?? REFUSED),
          new ivm.Callback((id: unknown) => run()?.clearTimer(id)),
          new ivm.Callback((token: unknown, kind: unknown, text: unknown) =>
            run()?.finishCell(token, kind, text),
          ),
          new ivm.Callback(() => run()?.now() ?? Date.now()),
        ],
        { result: { reference: true }, timeout: SETUP_TIMEOUT_MS },
      )) as ivm.Reference;
      prelude.release();
      bootstrap.release();
      const session: Session = {
        id: sessionId,
        language,
        limits,
        isolate,
        context,
        entry,
        toolsVersion: -1,
        cellCount: 0,
        cells: new Map(),
        activeRun: null,
        peakBytes: 0,
        disposedByHost: false,
        destroyAfterRun: false,
      };
      holder.session = session;
      return session;
    } catch (error) {
      if (!isolate.isDisposed) isolate.dispose();
      throw new SandboxError(
        "ENGINE_CRASHED",
        `A new isolate could not be set up: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }

  /** Disposes an isolate under a slice that may never return, and watches its thread. */
  #disposeBusy(session: Session, busy: Promise<unknown> | null): void {
    disposeIsolate(session);
    if (!busy) return;
    this.#stuck.set(busy, performance.now());
    void busy.finally(() => {
      this.#stuck.delete(busy);
      if (this.#stuck.size === 0) {
        clearInterval(this.#stuckCheck);
        this.#stuckCheck = undefined;
      }
    });
    this.#stuckCheck ??= setInterval(
      () => {
        const now = performance.now();
        for (const since of this.#stuck.values()) {
          if (now - since > this.#stuckThreadLimitMs) {
            clearInterval(this.#stuckCheck);
            this.#onFatal(
              `a disposed isolate's thread stayed in one native operation for more than ${this.#stuckThreadLimitMs} ms`,
            );
            return;
          }
        }
      },
      Math.max(10, Math.min(250, this.#stuckThreadLimitMs / 4)),
    );
  }

  /** isolated-vm's `onCatastrophicError`: answer the run it hit, then end the process. */
  #catastrophe(session: Session | null, message: string): void {
    const reason = `isolated-vm: ${message}`;
    if (this.#dying !== null) return;
    this.#dying = reason;
    const run = session?.activeRun;
    if (run) {
      // The run ends now and its answer leaves first (see run()); this is only a backstop.
      run.crash(message);
      setTimeout(() => this.#onFatal(reason), 1_000);
    } else {
      setTimeout(() => this.#onFatal(reason), 0);
    }
  }
}

function rememberCell(session: Session, cell: CompiledCell): void {
  session.cells.set(cell.filename, cell);
  if (session.cells.size > KEPT_CELLS) {
    const oldest = session.cells.keys().next().value;
    if (oldest !== undefined) session.cells.delete(oldest);
  }
}

function disposeIsolate(session: Session): void {
  session.disposedByHost = true;
  try {
    if (!session.isolate.isDisposed) session.isolate.dispose();
  } catch {
    // Already disposed by isolated-vm (memory limit).
  }
}
