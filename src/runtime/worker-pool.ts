/**
 * A {@link LanguageRuntime} whose sessions live in a pool of engine workers (worker threads
 * or child processes) speaking the engine protocol (./engine-protocol.ts).
 *
 * - Sessions are placed on the worker holding the fewest, spawning workers up to `size`.
 * - Tool calls from a worker go to the run's {@link ToolBridge} on this thread.
 * - Cancel sets the run's flag in the worker's shared cancel buffer (seen by the engine
 *   while guest code holds the worker's thread) and sends a "cancel" message.
 * - A watchdog ends any run still going `watchdogGraceMs` after its `wall_ms`: the worker is
 *   terminated (a long native operation cannot be interrupted any other way). That run ends
 *   `timeout` / `WALL_TIME_LIMIT`.
 * - When a worker dies (watchdog, crash, out-of-memory kill), its runs in flight end
 *   `interrupted` / `ENGINE_CRASHED`; its sessions keep their ids and come back empty on a
 *   live worker at their next run, whose result carries a `SESSION_RESET` diagnostic. The
 *   server keeps serving.
 *
 * @module
 */
import { type ChildProcess, spawn as spawnProcess } from "node:child_process";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { type Worker, type WorkerOptions, Worker as WorkerThread } from "node:worker_threads";
import type { Diagnostic, Language, SessionId, SessionLimits } from "../contract/types.ts";
import { errorObject, isErrorCode, SandboxError } from "../errors.ts";
import { canRestoreWith } from "../snapshot/snapshots.ts";
import {
  CANCEL_SLOTS,
  type EngineMessage,
  type EngineWorkerData,
  type HostMessage,
  type WireRunRequest,
} from "./engine-protocol.ts";
import type {
  LanguageRuntime,
  RuntimeInfo,
  RuntimeRunOutcome,
  RuntimeRunRequest,
  ToolBridge,
} from "./interface.ts";

/** A live connection to one engine worker. */
export interface EngineChannel {
  post(message: HostMessage): void;
  onMessage(listener: (message: EngineMessage) => void): void;
  /** Called once when the worker is gone, for whatever reason. */
  onExit(listener: (reason: string) => void): void;
  /** Kills the worker now. */
  terminate(): void;
}

/** Options of {@link WorkerPoolRuntime}. */
export interface WorkerPoolOptions {
  info: RuntimeInfo;
  /** Most workers at once (default: the machine's parallelism, at least 2). */
  size?: number;
  /** Starts a worker. `cancelBuffer` is shared memory for cancel flags, or null. */
  spawn(cancelBuffer: SharedArrayBuffer | null): EngineChannel;
  /** Whether workers share memory with this thread (worker threads do, processes do not). */
  sharedMemory: boolean;
  /** Extra wall time a run gets before its worker is terminated, in ms (default 500). */
  watchdogGraceMs?: number;
  /** Start all `size` workers now rather than on first use (default false). */
  prestart?: boolean;
}

interface PendingRequest {
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

interface InFlightRun {
  bridge: ToolBridge;
  onOutput: RuntimeRunRequest["onOutput"];
  slot: number | null;
  watchdogFired: boolean;
  settle(outcome: RuntimeRunOutcome): void;
  /** Stops or restarts the watchdog (a run waiting for approval is not stuck). */
  pauseWatchdog(paused: boolean): void;
}

interface SessionEntry {
  id: SessionId;
  limits: SessionLimits;
  language: Language;
  worker: PoolWorker | null;
  /** Its worker died since its last run: state was lost. */
  lost: boolean;
}

class PoolWorker {
  readonly channel: EngineChannel;
  readonly flags: Int32Array | null;
  readonly ready: Promise<void>;
  readonly sessions = new Set<SessionId>();
  readonly pending = new Map<number, PendingRequest>();
  readonly runs = new Map<string, InFlightRun>();
  readonly #freeSlots: number[] = [];
  alive = true;
  exitReason = "";
  #nextRequestId = 0;
  #markReady!: () => void;
  #failReady!: (error: Error) => void;

  constructor(spawn: WorkerPoolOptions["spawn"], sharedMemory: boolean) {
    const buffer = sharedMemory ? new SharedArrayBuffer(CANCEL_SLOTS * 4) : null;
    this.flags = buffer ? new Int32Array(buffer) : null;
    if (buffer) for (let i = CANCEL_SLOTS - 1; i >= 0; i--) this.#freeSlots.push(i);
    this.ready = new Promise<void>((resolve, reject) => {
      this.#markReady = resolve;
      this.#failReady = reject;
    });
    this.ready.catch(() => {});
    this.channel = spawn(buffer);
  }

  markReady(): void {
    this.#markReady();
  }

  failReady(reason: string): void {
    this.#failReady(
      new SandboxError("ENGINE_CRASHED", `The engine worker did not start: ${reason}`),
    );
  }

  request<T>(
    message: DistributiveOmit<HostMessage, "requestId"> & { kind: RequestKind },
  ): Promise<T> {
    if (!this.alive) {
      return Promise.reject(
        new SandboxError("ENGINE_CRASHED", `The engine worker is gone (${this.exitReason}).`),
      );
    }
    const requestId = ++this.#nextRequestId;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(requestId, { resolve: resolve as (value: unknown) => void, reject });
      this.channel.post({ ...message, requestId } as HostMessage);
    });
  }

  takeSlot(): number | null {
    if (!this.flags) return null;
    const slot = this.#freeSlots.pop();
    if (slot === undefined) return null;
    Atomics.store(this.flags, slot, 0);
    return slot;
  }

  releaseSlot(slot: number | null): void {
    if (slot !== null && this.flags) this.#freeSlots.push(slot);
  }
}

type RequestKind = "create" | "run" | "destroy" | "list" | "snapshot" | "restore";
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** See the module comment. */
export class WorkerPoolRuntime implements LanguageRuntime {
  readonly info: RuntimeInfo;
  readonly #options: WorkerPoolOptions;
  readonly #size: number;
  readonly #graceMs: number;
  readonly #workers: PoolWorker[] = [];
  readonly #sessions = new Map<SessionId, SessionEntry>();
  #closed = false;

  constructor(options: WorkerPoolOptions) {
    this.#options = options;
    this.info = options.info;
    this.#size = Math.max(1, options.size ?? Math.max(2, availableParallelism()));
    this.#graceMs = options.watchdogGraceMs ?? 500;
    if (options.prestart) {
      for (let i = 0; i < this.#size; i++) this.#spawn();
    }
  }

  /** Workers alive now (for health and tests). */
  get workerCount(): number {
    return this.#workers.filter((worker) => worker.alive).length;
  }

  /** Terminates the worker holding a session, as a crash would (for tests and operators). */
  killWorkerOf(sessionId: SessionId): boolean {
    const worker = this.#sessions.get(sessionId)?.worker;
    if (!worker?.alive) return false;
    worker.channel.terminate();
    return true;
  }

  async createSession(
    sessionId: SessionId,
    limits: SessionLimits,
    language: Language,
  ): Promise<void> {
    if (this.#sessions.has(sessionId)) {
      throw new SandboxError("SESSION_EXISTS", `Session '${sessionId}' already exists.`);
    }
    const entry: SessionEntry = { id: sessionId, limits, language, worker: null, lost: false };
    this.#sessions.set(sessionId, entry);
    try {
      await this.#place(entry);
    } catch (error) {
      this.#sessions.delete(sessionId);
      throw error;
    }
  }

  async run(request: RuntimeRunRequest): Promise<RuntimeRunOutcome> {
    const entry = this.#sessions.get(request.sessionId);
    if (!entry) throw new SandboxError("SESSION_NOT_FOUND", `No session '${request.sessionId}'.`);
    let restarted = false;
    if (!entry.worker?.alive) {
      await this.#place(entry);
      restarted = entry.lost;
      entry.lost = false;
    }
    const worker = entry.worker!;
    const slot = worker.takeSlot();
    const wire: WireRunRequest = {
      runId: request.runId,
      sessionId: request.sessionId,
      language: request.language,
      code: request.code,
      inputs: request.inputs,
      limits: request.limits,
      validateOnly: request.validateOnly,
      toolNames: request.tools.names,
      toolsVersion: request.tools.version,
      cancelSlot: slot,
      determinism: request.determinism ?? null,
      streamOutput: request.onOutput !== undefined,
    };
    const onAbort = () => {
      if (slot !== null && worker.flags) Atomics.store(worker.flags, slot, 1);
      if (worker.alive) worker.channel.post({ kind: "cancel", runId: request.runId });
    };
    request.signal.addEventListener("abort", onAbort, { once: true });
    let watchdog: NodeJS.Timeout | undefined;
    try {
      const outcome = await new Promise<RuntimeRunOutcome>((resolve, reject) => {
        let watchdogDue = performance.now() + request.limits.wall_ms + this.#graceMs;
        let pausedAt: number | null = null;
        const arm = () => {
          watchdog = setTimeout(
            () => {
              inFlight.watchdogFired = true;
              worker.channel.terminate();
            },
            Math.max(0, watchdogDue - performance.now()),
          );
        };
        const inFlight: InFlightRun = {
          bridge: request.tools,
          onOutput: request.onOutput,
          slot,
          watchdogFired: false,
          settle: resolve,
          pauseWatchdog: (paused) => {
            if (paused && pausedAt === null) {
              pausedAt = performance.now();
              clearTimeout(watchdog);
            } else if (!paused && pausedAt !== null) {
              watchdogDue += performance.now() - pausedAt;
              pausedAt = null;
              arm();
            }
          },
        };
        worker.runs.set(request.runId, inFlight);
        arm();
        worker.request<RuntimeRunOutcome>({ kind: "run", run: wire }).then(resolve, reject);
        if (request.signal.aborted) onAbort();
      });
      if (restarted) outcome.diagnostics.push(restartDiagnostic());
      return outcome;
    } finally {
      clearTimeout(watchdog);
      request.signal.removeEventListener("abort", onAbort);
      worker.runs.delete(request.runId);
      worker.releaseSlot(slot);
    }
  }

  sessionLost(sessionId: SessionId): boolean {
    return this.#sessions.get(sessionId)?.lost ?? false;
  }

  pauseClock(runId: string, paused: boolean): void {
    for (const worker of this.#workers) {
      const run = worker.runs.get(runId);
      if (!run) continue;
      run.pauseWatchdog(paused);
      if (worker.alive) worker.channel.post({ kind: "pause", runId, paused });
      return;
    }
  }

  async destroySession(sessionId: SessionId): Promise<boolean> {
    const entry = this.#sessions.get(sessionId);
    if (!entry) return false;
    this.#sessions.delete(sessionId);
    const worker = entry.worker;
    if (worker) {
      worker.sessions.delete(sessionId);
      if (worker.alive) await worker.request({ kind: "destroy", sessionId }).catch(() => false);
    }
    return true;
  }

  async listSessions(): Promise<SessionId[]> {
    return [...this.#sessions.keys()];
  }

  async snapshotSession(sessionId: SessionId): Promise<Uint8Array> {
    const entry = this.#sessions.get(sessionId);
    if (!entry) throw new SandboxError("SESSION_NOT_FOUND", `No session '${sessionId}'.`);
    if (!entry.worker?.alive) await this.#place(entry);
    return entry.worker!.request<Uint8Array>({ kind: "snapshot", sessionId });
  }

  async restoreSession(_snapshot: Uint8Array, _sessionId?: SessionId): Promise<SessionId> {
    throw new SandboxError(
      "SNAPSHOT_NOT_SUPPORTED",
      `${this.info.id} restores no image through a worker pool; the session manager replays a snapshot's journal instead.`,
    );
  }

  canRestoreSnapshot(snapshot: Uint8Array): boolean {
    return canRestoreWith(this.info, snapshot);
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const worker of this.#workers) {
      worker.alive = false;
      worker.channel.terminate();
    }
    this.#workers.length = 0;
    this.#sessions.clear();
  }

  /** Puts a session on a live worker (creating it there, empty). */
  async #place(entry: SessionEntry): Promise<void> {
    const worker = this.#pickWorker();
    await worker.ready;
    await worker.request({
      kind: "create",
      sessionId: entry.id,
      limits: entry.limits,
      language: entry.language,
    });
    entry.worker = worker;
    worker.sessions.add(entry.id);
  }

  #pickWorker(): PoolWorker {
    if (this.#closed) throw new SandboxError("SERVICE_CLOSING", "The runtime is closed.");
    const live = this.#workers.filter((worker) => worker.alive);
    if (live.length < this.#size) {
      const fewest = live.reduce<PoolWorker | null>(
        (best, worker) => (best && best.sessions.size <= worker.sessions.size ? best : worker),
        null,
      );
      if (!fewest || fewest.sessions.size > 0) return this.#spawn();
      return fewest;
    }
    return live.reduce((best, worker) =>
      worker.sessions.size < best.sessions.size ? worker : best,
    );
  }

  #spawn(): PoolWorker {
    const worker = new PoolWorker(this.#options.spawn, this.#options.sharedMemory);
    this.#workers.push(worker);
    worker.channel.onMessage((message) => this.#onMessage(worker, message));
    worker.channel.onExit((reason) => this.#onExit(worker, reason));
    return worker;
  }

  #onMessage(worker: PoolWorker, message: EngineMessage): void {
    switch (message.kind) {
      case "ready":
        worker.markReady();
        return;
      case "response": {
        const pending = worker.pending.get(message.requestId);
        if (!pending) return;
        worker.pending.delete(message.requestId);
        if (message.ok) pending.resolve(message.value);
        else {
          const code = isErrorCode(message.error.code) ? message.error.code : "INTERNAL_ERROR";
          pending.reject(new SandboxError(code, message.error.message));
        }
        return;
      }
      case "output": {
        try {
          worker.runs.get(message.runId)?.onOutput?.(message.stream, message.text);
        } catch {
          // A listener's failure must not break the pool.
        }
        return;
      }
      case "tool-call": {
        const run = worker.runs.get(message.runId);
        const reply = run
          ? run.bridge.call(message.name, message.argsJson, message.kwargsJson)
          : Promise.resolve({
              ok: false as const,
              status: "denied" as const,
              code: "RUN_CANCELLED",
              message: "The run has ended.",
              fatal: false,
            });
        void reply.then((value) => {
          if (worker.alive)
            worker.channel.post({ kind: "tool-reply", callId: message.callId, reply: value });
        });
        return;
      }
      default:
        return;
    }
  }

  #onExit(worker: PoolWorker, reason: string): void {
    if (!worker.alive && this.#closed) return;
    worker.alive = false;
    worker.exitReason = reason;
    worker.failReady(reason);
    const index = this.#workers.indexOf(worker);
    if (index >= 0) this.#workers.splice(index, 1);
    for (const [runId, run] of worker.runs) {
      worker.runs.delete(runId);
      run.settle(crashOutcome(run.watchdogFired, reason));
    }
    for (const pending of worker.pending.values()) {
      pending.reject(new SandboxError("ENGINE_CRASHED", `The engine worker stopped: ${reason}`));
    }
    worker.pending.clear();
    for (const sessionId of worker.sessions) {
      const entry = this.#sessions.get(sessionId);
      if (entry && entry.worker === worker) {
        entry.worker = null;
        entry.lost = true;
      }
    }
    worker.sessions.clear();
  }
}

function restartDiagnostic(): Diagnostic {
  return {
    severity: "info",
    code: "SESSION_RESET",
    message: "The session's engine worker had stopped; this run started from an empty session.",
    hint: "Values from earlier runs are gone; recreate them.",
    span: null,
  };
}

function crashOutcome(watchdog: boolean, reason: string): RuntimeRunOutcome {
  const error = watchdog
    ? errorObject(
        "WALL_TIME_LIMIT",
        "The run outlived wall_ms inside an operation the engine could not interrupt; its worker was stopped and the session was reset.",
      )
    : errorObject(
        "ENGINE_CRASHED",
        `The engine worker under this run stopped (${reason}); the session was reset.`,
      );
  return {
    status: watchdog ? "timeout" : "interrupted",
    result: null,
    stdout: "",
    stderr: "",
    diagnostics: [
      { severity: "error", code: error.code, message: error.message, hint: null, span: null },
      restartDiagnostic(),
    ],
    error,
    memoryPeakBytes: 0,
    instructions: 0,
    cpuMs: 0,
    sessionReset: true,
  };
}

/** Options for {@link spawnWorkerThread}. */
export interface WorkerThreadSpawnOptions {
  /** Module the worker runs (it calls `serveEngine`). */
  url: URL;
  /** Backend options passed in `workerData.options`. */
  options: unknown;
  resourceLimits?: WorkerOptions["resourceLimits"];
}

/** Starts an engine in a worker thread; the channel for {@link WorkerPoolOptions.spawn}. */
export function spawnWorkerThread(
  spawnOptions: WorkerThreadSpawnOptions,
  cancelBuffer: SharedArrayBuffer | null,
): EngineChannel {
  const workerData: EngineWorkerData = { cancelBuffer, options: spawnOptions.options };
  const worker: Worker = new WorkerThread(spawnOptions.url, {
    workerData,
    ...(spawnOptions.resourceLimits ? { resourceLimits: spawnOptions.resourceLimits } : {}),
    // The engine's output goes through the protocol; a stray write must not reach our stdout.
    stdout: true,
    stderr: true,
  });
  worker.stdout.resume();
  worker.stderr.resume();
  let exited = false;
  const exitListeners: ((reason: string) => void)[] = [];
  const exit = (reason: string) => {
    if (exited) return;
    exited = true;
    for (const listener of exitListeners) listener(reason);
  };
  worker.on("error", (error) => exit(`error: ${error.message}`));
  worker.on("exit", (code) => exit(`exit code ${code}`));
  return {
    post: (message) => worker.postMessage(message),
    onMessage: (listener) => worker.on("message", listener),
    onExit: (listener) => exitListeners.push(listener),
    terminate: () => {
      void worker.terminate();
    },
  };
}

/** Options for {@link spawnChildProcess}. */
export interface ChildProcessSpawnOptions {
  /** Module the child runs; it calls `serveEngine(runtime, processPort(), null)`. */
  module: URL;
  /** Backend options, readable in the child with {@link childEngineOptions}. */
  options: unknown;
  /** Extra Node.js flags (e.g. `--permission`, `--max-old-space-size=256`). */
  execArgv?: string[];
  /** The child's whole environment (default: nothing but `PATH`); nothing else is inherited. */
  env?: Record<string, string>;
  /** A command to start Node through, e.g. `["unshare", "-rn"]` for a private network namespace. */
  wrapper?: string[];
  /** Working directory of the child. */
  cwd?: string;
}

/**
 * Starts an engine in a child process (Node with an IPC channel using structured clone);
 * the channel for {@link WorkerPoolOptions.spawn} with `sharedMemory: false`. The child gets
 * a scrubbed environment and its stdout/stderr are drained, never forwarded.
 */
export function spawnChildProcess(spawnOptions: ChildProcessSpawnOptions): EngineChannel {
  const wrapper = spawnOptions.wrapper ?? [];
  const command = wrapper[0] ?? process.execPath;
  const args = [
    ...wrapper.slice(1),
    ...(wrapper.length > 0 ? [process.execPath] : []),
    ...(spawnOptions.execArgv ?? []),
    fileURLToPath(spawnOptions.module),
    JSON.stringify(spawnOptions.options ?? null),
  ];
  const child: ChildProcess = spawnProcess(command, args, {
    env: spawnOptions.env ?? { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    stdio: ["ignore", "pipe", "pipe", "ipc"],
    serialization: "advanced",
    ...(spawnOptions.cwd ? { cwd: spawnOptions.cwd } : {}),
  });
  child.stdout?.resume();
  child.stderr?.resume();
  let exited = false;
  const exitListeners: ((reason: string) => void)[] = [];
  const exit = (reason: string) => {
    if (exited) return;
    exited = true;
    for (const listener of exitListeners) listener(reason);
  };
  child.on("error", (error) => exit(`error: ${error.message}`));
  child.on("exit", (code, signal) => exit(signal ? `killed by ${signal}` : `exit code ${code}`));
  return {
    post: (message) => {
      if (child.connected) child.send(message);
    },
    onMessage: (listener) => child.on("message", (message) => listener(message as EngineMessage)),
    onExit: (listener) => exitListeners.push(listener),
    terminate: () => {
      child.kill("SIGKILL");
    },
  };
}
