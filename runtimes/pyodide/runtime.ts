/**
 * The Pyodide backend on the server side: one contained child process per session, and a
 * pool of ready ones so that creating a session takes a process that has already restored
 * the base image.
 *
 * - **Pool.** `poolSize` processes are kept ready (blocked, holding an idle interpreter). A
 *   session takes one; the pool refills in the background, at most `refillConcurrency`
 *   starts at a time and one every `refillIntervalMs`. With the pool empty, a session waits
 *   for the next start (a "cold" start, counted in {@link PyodidePoolStats}).
 * - **One process per session.** A process never serves a second session: sessions share no
 *   interpreter, no JavaScript realm, no memory. When a run discards its interpreter (memory
 *   exhausted, interpreter terminated, Pyodide failed) or the process dies, the session gets
 *   a fresh process at its next run.
 * - **Watchdog.** A run still going `wall_ms` + `interruptGraceMs` + `watchdogGraceMs` after
 *   it started kills its process (the supervisor inside should have ended it before).
 *
 * @module
 */
import { mkdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  errorObject,
  type Language,
  type LanguageRuntime,
  type RuntimeInfo,
  type RuntimeRunOutcome,
  type RuntimeRunRequest,
  SandboxError,
  type SessionId,
  type SessionLimits,
} from "../../src/index.ts";
import {
  type ChildCommand,
  type Containment,
  type ContainmentSetting,
  nodeFlags,
  resolveContainment,
} from "./containment.ts";
import {
  ensureDirectory,
  ensureImage,
  type ImageState,
  imagePath,
  type PyodideDistribution,
  pyodideDistribution,
} from "./image.ts";
import { reportToOutcome, resetDiagnostic } from "./outcome.ts";
import { PyodideProcess } from "./process.ts";
import type { ChildOptions, ChildRunRequest, ReadyInfo } from "./protocol.ts";

const REPOSITORY_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

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

interface Setup {
  containment: Containment;
  image: ImageState;
  distribution: PyodideDistribution;
  serve: ChildCommand;
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

interface Waiter {
  resolve(process: PyodideProcess): void;
  reject(error: Error): void;
}

const KEPT_START_TIMES = 32;

/**
 * Python sessions on Pyodide, one contained child process each, from a pool of ready ones
 * (see the module comment). Create with `createPyodideRuntime` (./index.ts).
 */
export class PyodideRuntime implements LanguageRuntime {
  readonly info: RuntimeInfo;
  readonly #options: Required<Omit<PyodideRuntimeOptions, "containment" | "runAs">> & {
    containment: ContainmentSetting;
    runAs: string | null;
  };
  readonly #sessions = new Map<SessionId, SessionEntry>();
  readonly #ready: PyodideProcess[] = [];
  readonly #starting = new Set<PyodideProcess>();
  readonly #waiters: Waiter[] = [];
  readonly #all = new Set<PyodideProcess>();
  readonly #startTimes: number[] = [];
  #setup: Promise<Setup> | null = null;
  #setupState: Setup | null = null;
  #builder: PyodideProcess | null = null;
  #closed = false;
  #started = 0;
  #coldStarts = 0;
  #failedStarts = 0;
  #failureStreak = 0;
  #lastStartError: string | null = null;
  #lastStartAt = 0;
  #refillTimer: NodeJS.Timeout | null = null;
  #idleWasmBytes: number | null = null;
  readonly #cacheDirConfigured: boolean;

  constructor(info: RuntimeInfo, options: PyodideRuntimeOptions = {}) {
    this.info = info;
    this.#cacheDirConfigured = options.cacheDir !== undefined;
    this.#options = {
      poolSize: Math.max(0, options.poolSize ?? 2),
      refillConcurrency: Math.max(1, options.refillConcurrency ?? 1),
      refillIntervalMs: Math.max(0, options.refillIntervalMs ?? 0),
      prestart: options.prestart ?? false,
      cacheDir: options.cacheDir ?? join(REPOSITORY_ROOT, ".data", "pyodide"),
      preloadModules: options.preloadModules ?? DEFAULT_PRELOAD_MODULES,
      containment: options.containment ?? "auto",
      allowUncontained: options.allowUncontained ?? false,
      runAs: options.runAs === undefined ? "65534:65534" : options.runAs,
      interruptGraceMs: options.interruptGraceMs ?? 200,
      watchdogGraceMs: options.watchdogGraceMs ?? 1_000,
      interpreterStackMb: options.interpreterStackMb ?? 128,
      cStackKb: options.cStackKb ?? 512,
      interpreterHeapMb: options.interpreterHeapMb ?? 256,
      processMemoryHeadroomMb: options.processMemoryHeadroomMb ?? 256,
      wasmCompiler: options.wasmCompiler ?? "optimizing",
    };
    if (this.#options.prestart) {
      this.#prepare().then(
        () => this.#refill(),
        () => {},
      );
    }
  }

  /** Pool, memory and image figures (see {@link PyodidePoolStats}). */
  stats(): PyodidePoolStats {
    const memory =
      this.#ready[0]?.pid === undefined ? null : processTreeMemory(this.#ready[0].pid!);
    const times = [...this.#startTimes].sort((a, b) => a - b);
    return {
      pool: {
        size: this.#options.poolSize,
        ready: this.#ready.length,
        starting: this.#starting.size,
        refillConcurrency: this.#options.refillConcurrency,
        refillIntervalMs: this.#options.refillIntervalMs,
      },
      sessions: [...this.#sessions.values()].filter((entry) => entry.process?.alive).length,
      started: this.#started,
      coldStarts: this.#coldStarts,
      failedStarts: this.#failedStarts,
      lastStartError: this.#lastStartError,
      startMsP50: times.length > 0 ? Math.round(times[Math.floor(times.length / 2)]!) : null,
      idleInterpreter: {
        rssBytes: memory?.rssBytes ?? this.#ready[0]?.readyInfo?.rssBytes ?? null,
        pssBytes: memory?.pssBytes ?? null,
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
  async warmUp(count = this.#options.poolSize): Promise<void> {
    await this.#prepare();
    this.#refill();
    const wanted = Math.min(count, this.#options.poolSize);
    while (this.#ready.length < wanted && !this.#closed) {
      if (this.#failureStreak > 3)
        throw new SandboxError(
          "RUNTIME_UNAVAILABLE",
          this.#lastStartError ?? "Pyodide processes fail to start.",
        );
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
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
      await this.#prepare();
      this.#checkMemory(limits);
      const process = await this.#acquire();
      if (this.#sessions.get(sessionId) !== entry) {
        this.#giveBack(process);
        return;
      }
      try {
        this.#checkMemory(limits);
      } catch (error) {
        this.#giveBack(process);
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
    if (entry.busy)
      throw new SandboxError("SESSION_BUSY", `Session '${request.sessionId}' is running.`);
    if (request.language !== "python") {
      return refusal(errorObject("LANGUAGE_MISMATCH", "This Pyodide session runs Python only."));
    }
    entry.busy = true;
    try {
      let restarted = false;
      if (!entry.process?.alive) {
        this.#assign(entry, await this.#acquire());
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
      };
      const watchdogMs =
        request.limits.wall_ms + this.#options.interruptGraceMs + this.#options.watchdogGraceMs;
      const { report, crashed } = await process.run(childRequest, request, watchdogMs);
      const outcome = reportToOutcome(report, request.limits);
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
    clearTimeout(this.#refillTimer ?? undefined);
    this.#builder?.kill();
    for (const process of this.#all) process.kill();
    this.#all.clear();
    this.#ready.length = 0;
    this.#starting.clear();
    this.#sessions.clear();
    for (const waiter of this.#waiters.splice(0)) {
      waiter.reject(new SandboxError("SERVICE_CLOSING", "The runtime is closed."));
    }
  }

  /** Returns an unused process to the pool. */
  #giveBack(process: PyodideProcess): void {
    if (process.alive && !process.busy && !this.#closed) this.#ready.unshift(process);
    else process.kill();
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

  /** Resolves containment and the base image, once. */
  #prepare(): Promise<Setup> {
    this.#setup ??= this.#doPrepare().then(
      (setup) => {
        this.#setupState = setup;
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

  async #doPrepare(): Promise<Setup> {
    const options = this.#options;
    if (this.#closed) throw new SandboxError("SERVICE_CLOSING", "The runtime is closed.");
    const cacheDir = usableCacheDir(options.cacheDir, this.#cacheDirConfigured);
    const rootDir = join(cacheDir, "root");
    ensureDirectory(rootDir);
    const containment = await resolveContainment({
      setting: options.containment,
      rootDir,
      runAs: options.runAs,
      nodePath: process.execPath,
    });
    if (
      containment.kind === "none" &&
      options.containment === "auto" &&
      !options.allowUncontained
    ) {
      throw new SandboxError(
        "RUNTIME_UNAVAILABLE",
        "Python sessions need Linux namespaces (unshare) to contain Pyodide, and they are not available here.",
        {
          hint: "Run on Linux with user namespaces enabled, or set the pyodide option allowUncontained (see docs/security.md).",
        },
      );
    }
    const distribution = pyodideDistribution();
    const path = imagePath(cacheDir, distribution, options.preloadModules);
    const base = this.#childCommand(distribution, containment, null, path);
    const image = await ensureImage(path, async () => {
      const builder = new PyodideProcess(
        containment,
        this.#childCommand(distribution, containment, "build", path),
      );
      this.#builder = builder;
      try {
        const built = await builder.image();
        this.#idleWasmBytes = built.info.wasmBytes;
        return built;
      } finally {
        builder.kill();
        this.#builder = null;
      }
    });
    if (this.#closed) throw new SandboxError("SERVICE_CLOSING", "The runtime is closed.");
    return { containment, image, distribution, serve: base };
  }

  #childCommand(
    distribution: PyodideDistribution,
    _containment: Containment,
    mode: "build" | null,
    path: string,
  ): ChildCommand {
    const options = this.#options;
    const runtimeDir = dirname(fileURLToPath(import.meta.url));
    const childOptions: ChildOptions = {
      mode: mode ?? "serve",
      imagePath: mode ? null : path,
      preloadModules: options.preloadModules,
      interpreterStackMb: options.interpreterStackMb,
      cStackBytes: options.cStackKb * 1_024,
      interpreterHeapMb: options.interpreterHeapMb,
      interruptGraceMs: options.interruptGraceMs,
      processMemoryHeadroomMb: options.processMemoryHeadroomMb,
    };
    // A cold load (build mode) also imports Pyodide's `ws` dependency.
    const readDirs = [distribution.dir, runtimeDir];
    if (mode === "build") readDirs.push(dirname(packageDirOf("ws", distribution.dir)));
    const readFiles = [join(REPOSITORY_ROOT, "package.json")];
    if (!mode) readFiles.push(path);
    const command: ChildCommand = {
      nodePath: process.execPath,
      execArgv: [],
      entry: join(runtimeDir, "child.ts"),
      optionsJson: JSON.stringify(childOptions),
      readDirs,
      readFiles,
    };
    command.execArgv = [
      ...nodeFlags(command),
      ...(options.wasmCompiler === "baseline" ? ["--liftoff-only"] : []),
    ];
    return command;
  }

  /** A ready process for a session: from the pool, or the next one to start. */
  async #acquire(): Promise<PyodideProcess> {
    const setup = await this.#prepare();
    for (;;) {
      const process = this.#ready.shift();
      if (!process) break;
      if (process.alive) {
        this.#refill();
        return process;
      }
    }
    this.#coldStarts += 1;
    const waiting = new Promise<PyodideProcess>((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
    });
    if (this.#starting.size < this.#waiters.length) this.#start(setup);
    this.#refill();
    return waiting;
  }

  #refill(): void {
    if (this.#closed || !this.#setupState) return;
    const options = this.#options;
    while (
      this.#ready.length + this.#starting.size < options.poolSize + this.#waiters.length &&
      this.#starting.size < options.refillConcurrency
    ) {
      const backoffMs =
        this.#failureStreak === 0 ? 0 : Math.min(30_000, 250 * 2 ** this.#failureStreak);
      const waitMs =
        this.#lastStartAt + Math.max(options.refillIntervalMs, backoffMs) - performance.now();
      if (waitMs > 0) {
        if (!this.#refillTimer) {
          this.#refillTimer = setTimeout(() => {
            this.#refillTimer = null;
            this.#refill();
          }, waitMs);
        }
        return;
      }
      this.#start(this.#setupState);
    }
  }

  #start(setup: Setup): void {
    if (this.#closed) return;
    const process = new PyodideProcess(setup.containment, setup.serve);
    this.#started += 1;
    this.#lastStartAt = performance.now();
    this.#starting.add(process);
    this.#all.add(process);
    process.onExit(() => {
      this.#all.delete(process);
      const index = this.#ready.indexOf(process);
      if (index >= 0) this.#ready.splice(index, 1);
      if (!this.#closed) this.#refill();
    });
    process.ready.then(
      (info: ReadyInfo) => {
        this.#starting.delete(process);
        this.#failureStreak = 0;
        this.#idleWasmBytes = info.wasmBytes;
        this.#startTimes.push(process.startMs);
        if (this.#startTimes.length > KEPT_START_TIMES) this.#startTimes.shift();
        if (this.#closed) {
          process.kill();
          return;
        }
        const waiter = this.#waiters.shift();
        if (waiter) waiter.resolve(process);
        else this.#ready.push(process);
        this.#refill();
      },
      (error: Error) => {
        this.#starting.delete(process);
        this.#failedStarts += 1;
        this.#failureStreak += 1;
        this.#lastStartError = error.message;
        if (this.#starting.size === 0 && this.#failureStreak >= 3) {
          for (const waiter of this.#waiters.splice(0)) {
            waiter.reject(new SandboxError("RUNTIME_UNAVAILABLE", error.message));
          }
        }
        this.#refill();
      },
    );
  }
}

function refusal(error: ReturnType<typeof errorObject>): RuntimeRunOutcome {
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

function packageDirOf(name: string, fromDir: string): string {
  // Resolved from the pyodide package, as Node resolves its imports.
  let dir = fromDir;
  for (;;) {
    const candidate = join(dir, "node_modules", name);
    try {
      readFileSync(join(candidate, "package.json"));
      return join(candidate, "package.json");
    } catch {
      const parent = dirname(dir);
      if (parent === dir) return join(fromDir, "node_modules", name, "package.json");
      dir = parent;
    }
  }
}

/** Resident and proportional memory of a process and its descendants (Linux /proc), or null. */
export function processTreeMemory(pid: number): { rssBytes: number; pssBytes: number } | null {
  try {
    let rssBytes = 0;
    let pssBytes = 0;
    const pending = [pid];
    while (pending.length > 0) {
      const current = pending.pop()!;
      const rollup = readFileSync(`/proc/${current}/smaps_rollup`, "utf8");
      rssBytes += kilobytes(rollup, "Rss") * 1_024;
      pssBytes += kilobytes(rollup, "Pss") * 1_024;
      const children = readFileSync(`/proc/${current}/task/${current}/children`, "utf8").trim();
      if (children) pending.push(...children.split(/\s+/).map(Number));
    }
    return { rssBytes, pssBytes };
  } catch {
    return null;
  }
}

function kilobytes(rollup: string, field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(rollup);
  return match ? Number(match[1]) : 0;
}

/**
 * The cache directory to use: the configured one, or by default `<repository>/.data/pyodide`,
 * falling back to a directory of this user's own under the system's temporary directory when
 * the repository is not writable. A fallback directory owned by someone else, or writable by
 * others, is refused: an image planted there would run in every session.
 */
function usableCacheDir(preferred: string, configured: boolean): string {
  try {
    ensureDirectory(preferred);
    return preferred;
  } catch (error) {
    if (configured) throw error;
  }
  const fallback = join(tmpdir(), `sandbox-runner-pyodide-${process.getuid?.() ?? "user"}`);
  mkdirSync(fallback, { recursive: true, mode: 0o755 });
  const stat = statSync(fallback);
  if ((process.getuid && stat.uid !== process.getuid()) || (stat.mode & 0o022) !== 0) {
    throw new SandboxError(
      "RUNTIME_UNAVAILABLE",
      `The Pyodide cache directory ${fallback} belongs to another user or is writable by others; set the pyodide option cacheDir.`,
    );
  }
  return fallback;
}
