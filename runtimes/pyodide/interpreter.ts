/**
 * The interpreter thread: one Pyodide instance, inside a worker thread of a contained child
 * process (./child.ts is the thread that supervises it). Never imported; started by the
 * supervisor.
 *
 * - Before Pyodide loads, the realm is prepared: JSPI is removed (so Python runs on this
 *   thread's large native stack rather than on V8's ~1 MiB stack-switching stacks, where
 *   C-level recursion overflowed before CPython's own check), and the WebAssembly memory's
 *   `grow` is gated at the run's `memory_mb`.
 * - Build mode loads Pyodide cold, runs the prelude (./prelude.py) and posts the memory
 *   snapshot: the base image. Serve mode restores from the image in milliseconds.
 * - Between runs this thread blocks in `Atomics.wait`: timers or tasks the guest left behind
 *   cannot run until the next run, and then under that run's limits.
 * - Tool calls are synchronous (the thread blocks until the reply) or asynchronous (a
 *   promise the guest awaits); the supervisor's interrupt (Pyodide's interrupt buffer, a
 *   shared Int32) wakes every wait.
 *
 * Nothing here is trusted by the supervisor: the guest can reach this realm.
 *
 * @module
 */
import { constants as fsConstants, readFileSync } from "node:fs";
import {
  type MessagePort,
  parentPort,
  receiveMessageOnPort,
  workerData,
} from "node:worker_threads";
import type { ToolCallReply } from "../../src/index.ts";
import {
  describe,
  emptyResult,
  failure,
  fromPython,
  interruptedError,
  StreamBuffer,
} from "./interpreter-support.ts";
import { beginPinnedRun, endPinnedRun, installPinning, pythonRandomSeed } from "./pinned.ts";
import {
  type ChildOptions,
  CONTROL,
  type InterpreterMessage,
  type InterpreterResult,
  type InterpreterRun,
  PRELUDE_MODULES,
  SIGINT,
  type SupervisorMessage,
} from "./protocol.ts";

/** What the supervisor hands this thread. */
export interface InterpreterData {
  options: ChildOptions;
  control: SharedArrayBuffer;
  interrupt: SharedArrayBuffer;
  commands: MessagePort;
}

/** The part of Pyodide's API this thread uses. */
interface Pyodide {
  runPython(code: string): unknown;
  pyimport(name: string): SandboxModule;
  setInterruptBuffer(buffer: Int32Array): void;
  setStdout(options: { write: (buffer: Uint8Array) => number }): void;
  setStderr(options: { write: (buffer: Uint8Array) => number }): void;
  makeMemorySnapshot(): Uint8Array;
  _module: {
    memory: WebAssembly.Memory;
    _emscripten_stack_get_base(): number;
    _PyThreadState_Get(): number;
    _PyUnstable_ThreadState_SetStackProtection(state: number, start: number, size: number): number;
  };
}

interface PyProxy {
  destroy(): void;
  then?: unknown;
}

/** The prelude module as JavaScript sees it. */
interface SandboxModule {
  attach(bridge: object): void;
  warm_up(): void;
  run(requestJson: string): string | (PyProxy & PromiseLike<string>);
  settle(): number;
}

const WASM_PAGE_BYTES = 65_536;
/** Longest the thread waits for left-over tasks to take their cancellation, in ms. */
const SETTLE_MS = 50;
const STOP_REPLY = '{"ok":false,"stop":true}';

const data = workerData as InterpreterData;
const port = parentPort!;
const control = new Int32Array(data.control);
const interrupt = new Int32Array(data.interrupt);
const commands = data.commands;
const post = (message: InterpreterMessage, transfer: ArrayBuffer[] = []) =>
  port.postMessage(message, transfer);

// ---- The realm, before Pyodide loads -------------------------------------------------------

const wasm = WebAssembly as unknown as Record<string, unknown>;
delete wasm.Suspending;
delete wasm.promising;

let gatedMemory: WebAssembly.Memory | null = null;
let memoryCapBytes = Number.POSITIVE_INFINITY;
let refusedInARow = 0;
const realGrow = WebAssembly.Memory.prototype.grow;
function gatedGrow(this: WebAssembly.Memory, deltaPages: number): number {
  if (this === gatedMemory) {
    const next = this.buffer.byteLength + deltaPages * WASM_PAGE_BYTES;
    if (next > memoryCapBytes) {
      // Emscripten tries three sizes before an allocation fails.
      refusedInARow += 1;
      if (refusedInARow >= 3) memoryExhausted();
      throw new RangeError("WebAssembly.Memory.grow(): the session's memory_mb is reached");
    }
    refusedInARow = 0;
  }
  return realGrow.call(this, deltaPages);
}
Object.defineProperty(WebAssembly.Memory.prototype, "grow", {
  value: gatedGrow,
  writable: false,
  configurable: false,
  enumerable: false,
});

// The wall clock and entropy answer from the run's seed and clock while a run is pinned.
installPinning();

// Under Node's permission model `process.binding` is refused; Pyodide reads fs constants from it.
const processWithBinding = process as unknown as { binding: (name: string) => unknown };
const originalBinding = processWithBinding.binding;
processWithBinding.binding = (name: string) =>
  name === "constants" ? { fs: fsConstants, os: {} } : originalBinding.call(process, name);

// ---- Output ---------------------------------------------------------------------------------

const streams = { 1: new StreamBuffer(1, post), 2: new StreamBuffer(2, post) } as const;
const flushOutput = () => {
  streams[1].flush();
  streams[2].flush();
};
const rawDecoders = { 1: new TextDecoder(), 2: new TextDecoder() } as const;
const rawWriter = (stream: 1 | 2) => ({
  write: (buffer: Uint8Array) => {
    if (runActive) streams[stream].write(rawDecoders[stream].decode(buffer, { stream: true }));
    return buffer.length;
  },
});

// ---- Run state --------------------------------------------------------------------------------

let activeSandbox: SandboxModule | null = null;
let activeMemory: WebAssembly.Memory | null = null;
let strayFailure: unknown = null;
let runActive = false;
let stopping = false;
let stopRequested: (() => void) | null = null;
let nextCallId = 0;
const replies = new Map<number, string>();
const waiting = new Map<number, (reply: string) => void>();

function memoryExhausted(): void {
  Atomics.store(control, CONTROL.memoryExhausted, 1);
  stopping = true;
  Atomics.store(interrupt, 0, SIGINT);
}

function replyText(reply: ToolCallReply): string {
  if (reply.ok) return `{"ok":true,"value":${reply.valueJson}}`;
  return JSON.stringify({
    ok: false,
    code: reply.code,
    message: reply.message,
    status: reply.status,
  });
}

function dispatch(message: SupervisorMessage): void {
  switch (message.kind) {
    case "tool-reply": {
      const text = replyText(message.reply);
      const resolve = waiting.get(message.callId);
      if (resolve) {
        waiting.delete(message.callId);
        resolve(text);
      } else {
        replies.set(message.callId, text);
      }
      return;
    }
    case "stop":
      stopping = true;
      stopRequested?.();
      return;
    case "run":
      if (!runActive) void execute(message.run);
      return;
    default:
      return;
  }
}

function drainCommands(): void {
  for (;;) {
    const received = receiveMessageOnPort(commands);
    if (!received) return;
    dispatch(received.message as SupervisorMessage);
  }
}

const interrupted = () => stopping || Atomics.load(interrupt, 0) !== 0;

/** Blocks until `done()` or an interrupt; `timeoutMs` bounds the whole wait. Answers whether `done()` held. */
function block(done: () => boolean, timeoutMs = Number.POSITIVE_INFINITY): boolean {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const seen = Atomics.load(control, CONTROL.wake);
    drainCommands();
    if (done()) return true;
    if (interrupted()) return false;
    const remaining = deadline - performance.now();
    if (remaining <= 0) return false;
    Atomics.wait(control, CONTROL.wake, seen, Math.min(remaining, 2_147_483_647));
  }
}

/** What Python calls through `_sandbox._bridge`. */
const bridge = {
  write(stream: number, text: string): void {
    if (runActive) streams[stream === 2 ? 2 : 1].write(String(text));
  },
  call_sync(name: string, argsJson: string, kwargsJson: string): string {
    if (!runActive || interrupted()) return STOP_REPLY;
    flushOutput();
    const callId = ++nextCallId;
    post({ kind: "tool-call", callId, name, argsJson, kwargsJson });
    const answered = block(() => replies.has(callId));
    if (!answered) return STOP_REPLY;
    const reply = replies.get(callId)!;
    replies.delete(callId);
    return reply;
  },
  call_async(name: string, argsJson: string, kwargsJson: string): Promise<string> {
    if (!runActive || interrupted()) return Promise.resolve(STOP_REPLY);
    flushOutput();
    const callId = ++nextCallId;
    const reply = new Promise<string>((resolve) => waiting.set(callId, resolve));
    post({ kind: "tool-call", callId, name, argsJson, kwargsJson });
    return reply;
  },
  /** Sleeps; answers false when the run's interrupt cut the sleep short. */
  sleep(seconds: number): boolean {
    flushOutput();
    const ms = Number.isFinite(seconds) ? seconds * 1_000 : Number.POSITIVE_INFINITY;
    const deadline = performance.now() + ms;
    block(() => performance.now() >= deadline, ms);
    return !interrupted();
  },
};

// ---- Loading ----------------------------------------------------------------------------------

const started = performance.now();
const { loadPyodide } = (await import("pyodide")) as unknown as {
  loadPyodide(options: Record<string, unknown>): Promise<Pyodide>;
};
const options = data.options;
const quiet = { stdout: () => {}, stderr: () => {} };
const env = { HOME: "/home/pyodide", LANG: "C.UTF-8" };

if (options.mode === "build") {
  try {
    const pyodide = await loadPyodide({
      ...quiet,
      env,
      _makeSnapshot: true,
      _sysExecutable: "python",
    });
    // The two prelude modules, as `_sandbox_results` and `_sandbox` (which imports the first).
    const sources: Record<string, string> = {};
    for (const [module, file] of PRELUDE_MODULES) {
      sources[module] = readFileSync(new URL(file, import.meta.url), "utf8");
    }
    (pyodide as unknown as { globals: { set(k: string, v: unknown): void } }).globals.set(
      "__sandbox_sources__",
      JSON.stringify(sources),
    );
    pyodide.runPython(
      [
        "import json, sys, types",
        "for _name, _source in json.loads(__sandbox_sources__).items():",
        "    _m = types.ModuleType(_name)",
        "    exec(compile(_source, '<sandbox>', 'exec'), _m.__dict__)",
        "    sys.modules[_name] = _m",
        `sys.modules['_sandbox']._prepare_image(${JSON.stringify(options.preloadModules)})`,
        "del _m, _name, _source, __sandbox_sources__",
      ].join("\n"),
    );
    const image = pyodide.makeMemorySnapshot();
    const info = {
      wasmBytes: pyodide._module.memory.buffer.byteLength,
      loadMs: performance.now() - started,
    };
    post({ kind: "image", bytes: image, info }, [image.buffer as ArrayBuffer]);
  } catch (error) {
    post({ kind: "failed", message: describe(error) });
  }
} else {
  let pyodide: Pyodide;
  let sandbox: SandboxModule;
  try {
    pyodide = await loadPyodide({ ...quiet, _loadSnapshot: readFileSync(options.imagePath!) });
    gatedMemory = pyodide._module.memory;
    Object.preventExtensions(gatedMemory);
    pyodide.setStdout(rawWriter(1));
    pyodide.setStderr(rawWriter(2));
    pyodide.setInterruptBuffer(interrupt);
    const m = pyodide._module;
    // CPython's C-recursion check measures the Emscripten stack; give it a budget small enough
    // that it trips long before this thread's native stack overflows (docs/limits.md).
    const base = m._emscripten_stack_get_base();
    m._PyUnstable_ThreadState_SetStackProtection(
      m._PyThreadState_Get(),
      base - options.cStackBytes,
      options.cStackBytes,
    );
    sandbox = pyodide.pyimport("_sandbox");
    sandbox.attach(bridge);
    sandbox.warm_up();
    // Pyodide keeps its options, and with them the 30 MiB image it no longer needs.
    const api = (pyodide as unknown as { _api?: { config?: Record<string, unknown> } })._api;
    if (api?.config) delete api.config._loadSnapshot;
    (globalThis as { gc?: () => void }).gc?.();
  } catch (error) {
    post({ kind: "failed", message: describe(error) });
    throw error;
  }
  process.on("uncaughtException", onStray);
  process.on("unhandledRejection", onStray);
  commands.on("message", (message: SupervisorMessage) => dispatch(message));
  post({
    kind: "ready",
    info: {
      wasmBytes: pyodide._module.memory.buffer.byteLength,
      loadMs: performance.now() - started,
    },
  });
  activeSandbox = sandbox;
  activeMemory = pyodide._module.memory;
  setImmediate(idle);
}

/**
 * A Python exception that escaped into the event loop (an interrupt landing in asyncio's own
 * code) or any other stray error: it ends the current run.
 */
function onStray(error: unknown): void {
  strayFailure ??= error;
  stopRequested?.();
}

/** Blocks until the supervisor sends a run; starts it. */
function idle(): void {
  for (;;) {
    const seen = Atomics.load(control, CONTROL.wake);
    const received = receiveMessageOnPort(commands);
    if (received) {
      const message = received.message as SupervisorMessage;
      if (message.kind === "run") {
        void execute(message.run);
        return;
      }
      dispatch(message);
      continue;
    }
    Atomics.wait(control, CONTROL.wake, seen);
  }
}

async function execute(run: InterpreterRun): Promise<void> {
  runActive = true;
  stopping = false;
  strayFailure = null;
  refusedInARow = 0;
  memoryCapBytes = run.memoryCapBytes;
  replies.clear();
  waiting.clear();
  streams[1].reset(run.limits.max_stdout_bytes);
  streams[2].reset(run.limits.max_stdout_bytes);
  beginPinnedRun(run);
  let result: InterpreterResult;
  try {
    result = await runCell(run);
  } catch (error) {
    result = failure(error);
  }
  result.clock = endPinnedRun() ?? { values: [], complete: false };
  runActive = false;
  flushOutput();
  result.memoryBytes = activeMemory?.buffer.byteLength ?? 0;
  post({ kind: "done", result });
  // Block right away: nothing the guest scheduled runs before the next run.
  idle();
}

async function runCell(run: InterpreterRun): Promise<InterpreterResult> {
  const sandbox = activeSandbox!;
  const request = JSON.stringify({
    code: run.code,
    cellName: run.cellName,
    inputsJson: run.inputsJson,
    validateOnly: run.validateOnly,
    toolNames: run.toolNames,
    toolsVersion: run.toolsVersion,
    stackDepth: run.limits.max_stack_depth,
    randomSeed: pythonRandomSeed(run.seed),
  });
  const started = sandbox.run(request);
  let text: string | null;
  if (typeof started === "string") {
    text = started;
  } else {
    const task = started;
    try {
      text = await untilStopped(Promise.resolve(task as PromiseLike<string>));
      if (text === null) cancelTask(task);
    } finally {
      task.destroy();
    }
  }
  await settleTasks(sandbox);
  if (typeof started !== "string") {
    // One turn of the event loop, inside the run: the promise callbacks awaiting left behind
    // are released now, not held (as JavaScript objects a session image cannot carry) until
    // the next run.
    await new Promise((resolve) => setImmediate(resolve));
  }
  if (text !== null) return fromPython(text);
  if (strayFailure !== null) return failure(strayFailure);
  return { ...emptyResult(), end: "exception", error: interruptedError() };
}

/** Waits for `promise`, or answers null when the run is stopped first. */
function untilStopped<T>(promise: Promise<T>): Promise<T | null> {
  if (stopping) return Promise.resolve(null);
  return new Promise<T | null>((resolve, reject) => {
    stopRequested = () => resolve(null);
    promise.then(resolve, reject);
  }).finally(() => {
    stopRequested = null;
  });
}

function cancelTask(task: PyProxy): void {
  try {
    (task as unknown as { cancel(): void }).cancel();
  } catch {
    // The task may be done, or the interpreter unable to answer; the run ends either way.
  }
}

/** Cancels what the run left pending and lets it take the cancellation, briefly. */
async function settleTasks(sandbox: SandboxModule): Promise<void> {
  let pending: number;
  try {
    pending = sandbox.settle();
  } catch {
    return;
  }
  const until = performance.now() + SETTLE_MS;
  while (pending > 0 && performance.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 1));
    try {
      pending = sandbox.settle();
    } catch {
      return;
    }
  }
}
