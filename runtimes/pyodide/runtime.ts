/**
 * The Pyodide backend on the server side: one contained child process per session, taken
 * from a pool of ready ones (./pool.ts) so that creating a session finds an interpreter that
 * has already restored the base image (./setup.ts, ./image.ts).
 *
 * - **One process per session.** A process never serves a second session: sessions share no
 *   interpreter, no JavaScript realm, no memory. When a run discards its interpreter (memory
 *   exhausted, interpreter terminated, Pyodide failed) or the process dies, the session gets
 *   a fresh process at its next run.
 * - **Watchdog.** A run still going `wall_ms` + `interruptGraceMs` + `watchdogGraceMs` after
 *   it started kills its process (the supervisor inside should have ended it before).
 *
 * @module
 */
import { join } from "node:path";
import {
  canRestoreWith,
  type ErrorObject,
  errorObject,
  freshSeed,
  type Language,
  type LanguageRuntime,
  MAX_RECORDED_CLOCK_READS,
  type RuntimeInfo,
  type RuntimeRunOutcome,
  type RuntimeRunRequest,
  SandboxError,
  type SessionId,
  type SessionLimits,
} from "../../src/index.ts";
import {
  DEFAULT_PRELOAD_MODULES,
  type PyodidePoolStats,
  type PyodideRuntimeOptions,
} from "./options.ts";
import { RunOutput, reportToOutcome, resetDiagnostic } from "./outcome.ts";
import { InterpreterPool } from "./pool.ts";
import { ImageRefused, PyodideProcess } from "./process.ts";
import type { ChildRunRequest } from "./protocol.ts";
import { openSessionImage, SESSION_IMAGE_FORMAT, sealSessionImage } from "./session-image.ts";
import { prepareSetup, REPOSITORY_ROOT, type Setup, type SetupOptions } from "./setup.ts";

interface SessionEntry {
  readonly id: SessionId;
  readonly limits: SessionLimits;
  process: PyodideProcess | null;
  /** Its process died since its last run: the next run starts empty and says so. */
  lost: boolean;
  /** ... and no run of its own was going on then (see {@link PyodideRuntime.sessionLost}). */
  lostIdle: boolean;
  cells: number;
  busy: boolean;
}

/**
 * Python sessions on Pyodide, one contained child process each, from a pool of ready ones
 * (see the module comment). Create with `createPyodideRuntime` (./index.ts).
 */
export class PyodideRuntime implements LanguageRuntime {
  readonly info: RuntimeInfo;
  readonly #setupOptions: SetupOptions;
  readonly #poolSize: number;
  readonly #refill: { concurrency: number; intervalMs: number };
  readonly #watchdogGraceMs: number;
  readonly #imageTimeoutMs: number;
  readonly #sessions = new Map<SessionId, SessionEntry>();
  readonly #pool: InterpreterPool;
  #setup: Promise<Setup> | null = null;
  #setupState: Setup | null = null;
  #builder: PyodideProcess | null = null;
  #closed = false;
  #idleWasmBytes: number | null = null;

  constructor(info: RuntimeInfo, options: PyodideRuntimeOptions = {}) {
    this.info = info;
    this.#setupOptions = {
      cacheDir: options.cacheDir ?? join(REPOSITORY_ROOT, ".data", "pyodide"),
      cacheDirConfigured: options.cacheDir !== undefined,
      preloadModules: options.preloadModules ?? DEFAULT_PRELOAD_MODULES,
      containment: options.containment ?? "auto",
      allowUncontained: options.allowUncontained ?? false,
      runAs: options.runAs === undefined ? "65534:65534" : options.runAs,
      interpreterStackMb: options.interpreterStackMb ?? 128,
      cStackKb: options.cStackKb ?? 512,
      interpreterHeapMb: options.interpreterHeapMb ?? 256,
      interruptGraceMs: options.interruptGraceMs ?? 200,
      processMemoryHeadroomMb: options.processMemoryHeadroomMb ?? 256,
      wasmCompiler: options.wasmCompiler ?? "optimizing",
    };
    this.#poolSize = Math.max(0, options.poolSize ?? 2);
    this.#refill = {
      concurrency: Math.max(1, options.refillConcurrency ?? 1),
      intervalMs: Math.max(0, options.refillIntervalMs ?? 0),
    };
    this.#watchdogGraceMs = options.watchdogGraceMs ?? 1_000;
    this.#imageTimeoutMs = options.imageTimeoutMs ?? 30_000;
    this.#pool = new InterpreterPool(
      {
        size: this.#poolSize,
        refillConcurrency: this.#refill.concurrency,
        refillIntervalMs: this.#refill.intervalMs,
      },
      () => {
        const setup = this.#setupState!;
        return new PyodideProcess(setup.containment, setup.serve);
      },
      (ready) => {
        this.#idleWasmBytes = ready.wasmBytes;
      },
    );
    if (options.prestart) {
      this.#prepare().then(
        () => this.#pool.refill(),
        () => {},
      );
    }
  }

  /** Pool, memory and image figures (see {@link PyodidePoolStats}). */
  stats(): PyodidePoolStats {
    const pool = this.#pool.figures();
    return {
      pool: {
        size: this.#poolSize,
        ready: pool.ready,
        starting: pool.starting,
        refillConcurrency: this.#refill.concurrency,
        refillIntervalMs: this.#refill.intervalMs,
      },
      sessions: [...this.#sessions.values()].filter((entry) => entry.process?.alive).length,
      started: pool.started,
      coldStarts: pool.coldStarts,
      failedStarts: pool.failedStarts,
      lastStartError: pool.lastStartError,
      startMsP50: pool.startMsP50,
      idleInterpreter: {
        rssBytes: pool.idleRssBytes,
        pssBytes: pool.idlePssBytes,
        wasmBytes: this.#idleWasmBytes,
      },
      image: this.#setupState?.image ?? null,
      containment: this.#setupState?.containment.description ?? null,
    };
  }

  /**
   * Builds the base image if needed and waits until the pool holds `count` ready interpreters
   * (at most `poolSize`; default all of them). For benchmarks, tests and operators.
   * @throws SandboxError `RUNTIME_UNAVAILABLE` when processes keep failing to start.
   */
  async warmUp(count = this.#poolSize): Promise<void> {
    await this.#prepare();
    await this.#pool.warm(count);
  }

  /** Kills the process holding a session, as a crash would (for tests and operators). */
  killProcessOf(sessionId: SessionId): boolean {
    const process = this.#sessions.get(sessionId)?.process;
    if (!process?.alive) return false;
    process.kill();
    return true;
  }

  /**
   * Creates an empty session on a ready interpreter (waiting for one when the pool is empty).
   * @throws SandboxError `SESSION_EXISTS`; `LIMIT_EXCEEDS_CEILING` when `memory_mb` is not
   *   above the interpreter's own size; `RUNTIME_UNAVAILABLE` when no process can be started
   *   (containment unavailable, image build failed); `SERVICE_CLOSING`.
   */
  async createSession(
    sessionId: SessionId,
    limits: SessionLimits,
    _language: Language,
  ): Promise<void> {
    if (this.#sessions.has(sessionId)) {
      throw new SandboxError("SESSION_EXISTS", `Session '${sessionId}' already exists.`);
    }
    const entry: SessionEntry = {
      id: sessionId,
      limits,
      process: null,
      lost: false,
      lostIdle: false,
      cells: 0,
      busy: false,
    };
    this.#sessions.set(sessionId, entry);
    try {
      this.#checkMemory(limits);
      const process = await this.#take();
      if (this.#sessions.get(sessionId) !== entry) {
        this.#pool.giveBack(process);
        return;
      }
      try {
        this.#checkMemory(limits);
      } catch (error) {
        this.#pool.giveBack(process);
        throw error;
      }
      this.#assign(entry, process);
    } catch (error) {
      if (this.#sessions.get(sessionId) === entry) this.#sessions.delete(sessionId);
      throw error;
    }
  }

  /**
   * Runs one cell in the session's process. Guest failures, limits and a dying process are
   * outcomes (docs/limits.md says when the session is reset); a session whose process is gone
   * gets a fresh one first.
   * @throws SandboxError `SESSION_NOT_FOUND`, `SESSION_BUSY`, `RUNTIME_UNAVAILABLE`.
   */
  async run(request: RuntimeRunRequest): Promise<RuntimeRunOutcome> {
    const entry = this.#sessions.get(request.sessionId);
    if (!entry) throw new SandboxError("SESSION_NOT_FOUND", `No session '${request.sessionId}'.`);
    if (entry.busy) {
      throw new SandboxError("SESSION_BUSY", `Session '${request.sessionId}' is running.`);
    }
    if (request.language !== "python") {
      return refusal(errorObject("LANGUAGE_MISMATCH", "This Pyodide session runs Python only."));
    }
    entry.busy = true;
    try {
      let restarted = false;
      if (!entry.process?.alive) {
        this.#assign(entry, await this.#take());
        restarted = entry.lost;
        entry.lost = false;
        entry.lostIdle = false;
      }
      const process = entry.process!;
      entry.cells += 1;
      const childRequest: ChildRunRequest = {
        code: request.code,
        cellName: `<cell-${entry.cells}>`,
        inputsJson: JSON.stringify(request.inputs ?? {}),
        limits: request.limits,
        validateOnly: request.validateOnly,
        toolNames: request.tools.names,
        toolsVersion: request.tools.version,
        seed: request.determinism?.seed ?? freshSeed(),
        clock: request.determinism?.clock ?? null,
        maxClockReads: MAX_RECORDED_CLOCK_READS,
      };
      const watchdogMs =
        request.limits.wall_ms + this.#setupOptions.interruptGraceMs + this.#watchdogGraceMs;
      const output = new RunOutput(request.limits, request.onOutput);
      const { report, crashed } = await process.run(childRequest, request, watchdogMs, output);
      const outcome = reportToOutcome(report, request.limits, output, childRequest.clock);
      if (report.reset || !process.alive) {
        if (entry.process === process) entry.process = null;
        process.kill();
        // A crash is announced again by the next run, which starts empty.
        entry.lost = crashed;
        entry.lostIdle = false;
      }
      if (restarted) outcome.diagnostics.push(resetDiagnostic());
      return outcome;
    } finally {
      entry.busy = false;
    }
  }

  /** Kills the session's process; answers whether the session existed. */
  async destroySession(sessionId: SessionId): Promise<boolean> {
    const entry = this.#sessions.get(sessionId);
    if (!entry) return false;
    this.#sessions.delete(sessionId);
    const process = entry.process;
    entry.process = null;
    process?.kill();
    return true;
  }

  /** Ids of the sessions of this backend. */
  async listSessions(): Promise<SessionId[]> {
    return [...this.#sessions.keys()];
  }

  /**
   * An image of a session that is not running (./session-image.ts): its interpreter's memory
   * as a delta against the base image, and its files, made and encoded by its own process.
   * @throws SandboxError `SESSION_NOT_FOUND`, `SESSION_BUSY`; `SNAPSHOT_NOT_SUPPORTED` when no
   *   image can be made now (the session holds JavaScript objects or open files, or its
   *   process is gone) — the session is unchanged, except when its process died making the
   *   image: it is then lost as by any death between runs ({@link sessionLost}).
   */
  async snapshotSession(sessionId: SessionId): Promise<Uint8Array> {
    const entry = this.#sessions.get(sessionId);
    if (!entry) throw new SandboxError("SESSION_NOT_FOUND", `No session '${sessionId}'.`);
    if (entry.busy) throw new SandboxError("SESSION_BUSY", `Session '${sessionId}' is running.`);
    const process = entry.process;
    if (!process?.alive || !this.#setupState) {
      throw new SandboxError(
        "SNAPSHOT_NOT_SUPPORTED",
        `Session '${sessionId}' has no interpreter to image (its process ended since its last run).`,
      );
    }
    entry.busy = true;
    try {
      const image = await process.snapshot(this.#imageTimeoutMs);
      return sealSessionImage(
        {
          format: SESSION_IMAGE_FORMAT,
          session_id: sessionId,
          base: this.#setupState.imageKey,
          limits: entry.limits,
          heap_bytes: image.heapBytes,
          changed_pages: image.changedPages,
          cells: entry.cells,
        },
        image.bytes,
      );
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      // The process died making the image: no run of the session's own is to blame.
      if (!process.alive) entry.lostIdle = entry.lost;
      throw new SandboxError(
        "SNAPSHOT_NOT_SUPPORTED",
        error instanceof ImageRefused
          ? `No image of session '${sessionId}' can be made now: ${reason}.`
          : `The process of session '${sessionId}' failed while making its image (${reason}).`,
      );
    } finally {
      entry.busy = false;
    }
  }

  /**
   * Restores a session from an image made by {@link snapshotSession} on a server with the same
   * base image: a ready process from the pool loads it in place of its own interpreter, under
   * the same containment, and serves the session from then on, under `limits` (default: the
   * limits the image was taken under).
   * @throws SandboxError `SNAPSHOT_INVALID` (unreadable, or it did not load),
   *   `SNAPSHOT_BUILD_MISMATCH` (another base image), `SESSION_EXISTS`,
   *   `LIMIT_EXCEEDS_CEILING`, `RUNTIME_UNAVAILABLE`, `SERVICE_CLOSING`.
   */
  async restoreSession(
    snapshot: Uint8Array,
    sessionId?: SessionId,
    limits?: SessionLimits,
  ): Promise<SessionId> {
    const { header, image } = openSessionImage(snapshot);
    const id = sessionId ?? header.session_id;
    const sessionLimits = limits ?? header.limits;
    if (this.#sessions.has(id)) {
      throw new SandboxError("SESSION_EXISTS", `Session '${id}' already exists.`);
    }
    const entry: SessionEntry = {
      id,
      limits: sessionLimits,
      process: null,
      lost: false,
      lostIdle: false,
      cells: header.cells,
      busy: true,
    };
    this.#sessions.set(id, entry);
    try {
      const setup = await this.#prepare();
      if (header.base !== setup.imageKey) {
        throw new SandboxError(
          "SNAPSHOT_BUILD_MISMATCH",
          `The image is a delta against base image ${header.base}; this server's is ${setup.imageKey}.`,
        );
      }
      const memoryCapBytes = sessionLimits.memory_mb * 1_048_576;
      if (header.heap_bytes > memoryCapBytes) {
        throw new SandboxError("SNAPSHOT_INVALID", "The image's memory is larger than memory_mb.");
      }
      this.#checkMemory(sessionLimits);
      const process = await this.#pool.take({ refill: false });
      try {
        await process.restore(image, memoryCapBytes, this.#imageTimeoutMs);
      } catch (error) {
        process.kill();
        throw new SandboxError(
          "SNAPSHOT_INVALID",
          `The snapshot's Pyodide image did not load: ${(error as Error).message}`,
        );
      } finally {
        this.#pool.refillSoon();
      }
      if (this.#sessions.get(id) !== entry) {
        process.kill();
        throw new SandboxError(
          "SESSION_NOT_FOUND",
          `Session '${id}' was destroyed while restoring.`,
        );
      }
      this.#assign(entry, process);
      return id;
    } catch (error) {
      if (this.#sessions.get(id) === entry) this.#sessions.delete(id);
      throw error;
    } finally {
      entry.busy = false;
    }
  }

  /** Whether the snapshot's header says this backend can restore it (journal, or an image of this build). */
  canRestoreSnapshot(snapshot: Uint8Array): boolean {
    return canRestoreWith(this.info, snapshot);
  }

  /** Kills every process (pool, sessions, an image build in progress); later calls fail `SERVICE_CLOSING`. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#builder?.kill();
    this.#pool.close();
    for (const entry of this.#sessions.values()) entry.process?.kill();
    this.#sessions.clear();
  }

  /** Resolves containment and the base image (once), then takes a ready process. */
  async #take(): Promise<PyodideProcess> {
    await this.#prepare();
    return this.#pool.take();
  }

  /** Gives a session a process; if the process dies while it holds the session, the session's next run starts empty and says so. */
  #assign(entry: SessionEntry, process: PyodideProcess): void {
    entry.process = process;
    process.onExit(() => {
      if (entry.process !== process) return;
      entry.process = null;
      entry.lost = true;
      entry.lostIdle = !entry.busy;
    });
  }

  /**
   * Whether a session's process died between runs (ended for what it did while idle, killed
   * from outside, the machine out of memory): its next run would start empty. The session
   * manager then replays its journal first (`SESSION_RESTORED`).
   */
  sessionLost(sessionId: SessionId): boolean {
    const entry = this.#sessions.get(sessionId);
    return entry?.lostIdle === true && !entry.busy;
  }

  #checkMemory(limits: SessionLimits): void {
    const floor = this.#idleWasmBytes;
    if (floor !== null && limits.memory_mb * 1_048_576 <= floor) {
      throw new SandboxError(
        "LIMIT_EXCEEDS_CEILING",
        `memory_mb ${limits.memory_mb} is not above what the Pyodide interpreter itself holds (${Math.ceil(floor / 1_048_576)} MiB).`,
      );
    }
  }

  #prepare(): Promise<Setup> {
    this.#setup ??= prepareSetup(this.#setupOptions, {
      closed: () => this.#closed,
      building: (process) => {
        this.#builder = process;
      },
    }).then(
      (setup) => {
        this.#setupState = setup;
        if (setup.builtWasmBytes !== null) this.#idleWasmBytes ??= setup.builtWasmBytes;
        return setup;
      },
      (error: unknown) => {
        // Let a later session try again (the image build may have been killed by a restart).
        this.#setup = null;
        const message = error instanceof Error ? error.message : String(error);
        throw error instanceof SandboxError
          ? error
          : new SandboxError("RUNTIME_UNAVAILABLE", message);
      },
    );
    return this.#setup;
  }
}

function refusal(error: ErrorObject): RuntimeRunOutcome {
  return {
    status: "validation_error",
    result: null,
    stdout: "",
    stderr: "",
    diagnostics: [
      { severity: "error", code: error.code, message: error.message, hint: error.hint, span: null },
    ],
    error,
    memoryPeakBytes: 0,
    instructions: 0,
    cpuMs: 0,
    sessionReset: false,
  };
}
