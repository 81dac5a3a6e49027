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
import type { ContainmentSetting } from "./containment.ts";
import type { ImageState } from "./image.ts";
import { RunOutput, reportToOutcome, resetDiagnostic } from "./outcome.ts";
import { InterpreterPool } from "./pool.ts";
import { PyodideProcess } from "./process.ts";
import type { ChildRunRequest } from "./protocol.ts";
import { prepareSetup, REPOSITORY_ROOT, type Setup, type SetupOptions } from "./setup.ts";

/** Modules in the base image unless configured otherwise. */
export const DEFAULT_PRELOAD_MODULES: readonly string[] = [
  "asyncio",
  "base64",
  "collections",
  "copy",
  "csv",
  "dataclasses",
  "datetime",
  "decimal",
  "enum",
  "fractions",
  "functools",
  "hashlib",
  "itertools",
  "json",
  "math",
  "random",
  "re",
  "statistics",
  "string",
  "textwrap",
  "typing",
  "urllib.parse",
  "uuid",
];

/** Options of {@link PyodideRuntime} (all optional; docs/configuration.md). */
export interface PyodideRuntimeOptions {
  /** Ready interpreters kept in the pool (default 2; 0 starts one per session on demand). */
  poolSize?: number;
  /** Pool processes starting at once (default 1). */
  refillConcurrency?: number;
  /** Least time between two pool starts, in ms (default 0). */
  refillIntervalMs?: number;
  /** Start the pool (and build the base image if needed) at creation (default false). */
  prestart?: boolean;
  /** Where base images are cached (default `<repository>/.data/pyodide`). */
  cacheDir?: string;
  /** Python modules imported into the base image: faster first imports, more memory per interpreter. */
  preloadModules?: readonly string[];
  /** `"auto"` (default), `"none"`, or `{ wrapper: [...] }` (./containment.ts). */
  containment?: ContainmentSetting;
  /** With `"auto"`, run uncontained where namespaces are unavailable instead of refusing (default false). */
  allowUncontained?: boolean;
  /** `uid:gid` a child runs as when the server is root (default `"65534:65534"`; null keeps root). */
  runAs?: string | null;
  /** Time a run gets to stop after its interrupt before the interpreter is terminated, in ms (default 200). */
  interruptGraceMs?: number;
  /** Time past `wall_ms` + `interruptGraceMs` before the whole process is killed, in ms (default 1000). */
  watchdogGraceMs?: number;
  /** Native stack of the interpreter thread, in MiB (default 128). */
  interpreterStackMb?: number;
  /** C stack CPython may use before a RecursionError, in KiB (default 512). */
  cStackKb?: number;
  /** V8 heap cap of the interpreter thread, in MiB (default 256). */
  interpreterHeapMb?: number;
  /** Resident memory a process may use beyond its idle size and memory_mb before it is stopped, in MiB (default 256). */
  processMemoryHeadroomMb?: number;
  /**
   * V8's WebAssembly compilers for the interpreter: `"optimizing"` (default: baseline code
   * first, hot functions optimized) or `"baseline"` (Liftoff only: about 20 MiB less per
   * interpreter, Python about 1.9× slower; docs/runtimes.md).
   */
  wasmCompiler?: "optimizing" | "baseline";
}

/** What {@link PyodideRuntime.stats} reports (served by `GET /v1/runtimes`). */
export interface PyodidePoolStats {
  /** Configured ready interpreters, and how many are ready and starting now. */
  pool: {
    size: number;
    ready: number;
    starting: number;
    refillConcurrency: number;
    refillIntervalMs: number;
  };
  /** Sessions holding a process. */
  sessions: number;
  /** Processes started since creation, sessions that had to wait for one, and failed starts. */
  started: number;
  coldStarts: number;
  failedStarts: number;
  lastStartError: string | null;
  /** Median spawn-to-ready time of recent starts, in ms. */
  startMsP50: number | null;
  /** Memory of one ready interpreter: resident and proportional set size of its process (Linux), and its WebAssembly memory. */
  idleInterpreter: { rssBytes: number | null; pssBytes: number | null; wasmBytes: number | null };
  /** The base image, once known. */
  image: ImageState | null;
  /** How processes are contained. */
  containment: string | null;
}

interface SessionEntry {
  readonly id: SessionId;
  readonly limits: SessionLimits;
  process: PyodideProcess | null;
  /** Its process died since its last run: the next run starts empty and says so. */
  lost: boolean;
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

  /** @throws SandboxError `SNAPSHOT_NOT_SUPPORTED` (not built yet for Python sessions). */
  async snapshotSession(_sessionId: SessionId): Promise<Uint8Array> {
    throw new SandboxError("SNAPSHOT_NOT_SUPPORTED", "Pyodide sessions cannot be snapshotted yet.");
  }

  /** @throws SandboxError `SNAPSHOT_NOT_SUPPORTED` (not built yet for Python sessions). */
  async restoreSession(_snapshot: Uint8Array, _sessionId?: SessionId): Promise<SessionId> {
    throw new SandboxError("SNAPSHOT_NOT_SUPPORTED", "Pyodide sessions cannot be restored yet.");
  }

  /** Always false: no Python snapshots yet. */
  canRestoreSnapshot(_snapshot: Uint8Array): boolean {
    return false;
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
    });
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
