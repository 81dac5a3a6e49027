/**
 * The interpreter thread: one Pyodide instance, inside a worker thread of a contained child
 * process (./child.ts is the thread that supervises it). Never imported; started by the
 * supervisor.
 *
 * - Before Pyodide loads, the realm is prepared (./interpreter-realm.ts): JSPI removed, the
 *   WebAssembly memory's `grow` gated at the run's `memory_mb`, clock and entropy pinnable.
 * - Build mode (./interpreter-build.ts) loads Pyodide cold, runs the prelude (./prelude.py)
 *   and posts the memory snapshot: the base image. Serve mode restores from the image in
 *   milliseconds; between runs it can make an image of its session, or, in a process that
 *   has served nothing yet, load one in place of the base image's interpreter
 *   (./interpreter-image.ts).
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
import { readFileSync } from "node:fs";
import {
  type MessagePort,
  parentPort,
  receiveMessageOnPort,
  workerData,
} from "node:worker_threads";
import type { ToolCallReply } from "../../src/index.ts";
import { snapshotHeaderBytes } from "./image-delta.ts";
import { buildBaseImage } from "./interpreter-build.ts";
import {
  applyFiles,
  type EmscriptenFs,
  type FilesManifest,
  FsBaseline,
  imageDeserializer,
  imageSerializer,
} from "./interpreter-image.ts";
import { prepareRealm } from "./interpreter-realm.ts";
import {
  describe,
  emptyResult,
  failure,
  fromPython,
  interruptedError,
  StreamBuffer,
} from "./interpreter-support.ts";
import { beginPinnedRun, endPinnedRun, pythonRandomSeed } from "./pinned.ts";
import {
  type ChildOptions,
  CONTROL,
  type InterpreterMessage,
  type InterpreterResult,
  type InterpreterRun,
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
  makeMemorySnapshot(options: { serializer: (value: unknown) => unknown }): Uint8Array;
  FS: EmscriptenFs;
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
  restored(): void;
}

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

// The realm, before Pyodide loads: JSPI removed, memory gated, clock and entropy pinnable.
const memoryGate = prepareRealm(memoryExhausted);

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
/** The interpreter serving now (replaced when a session image is loaded). */
let activePyodide: Pyodide | null = null;
/** Its file system when it became ready: what a session image leaves out. */
let baseline: FsBaseline | null = null;

/** Takes over a loaded interpreter: memory gate, output, interrupts, C-stack budget. */
function adopt(pyodide: Pyodide): SandboxModule {
  memoryGate.gate(pyodide._module.memory);
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
  const sandbox = pyodide.pyimport("_sandbox");
  // Pyodide keeps its options, and with them the image it no longer needs.
  const api = (pyodide as unknown as { _api?: { config?: Record<string, unknown> } })._api;
  if (api?.config) delete api.config._loadSnapshot;
  activePyodide = pyodide;
  activeSandbox = sandbox;
  activeMemory = m.memory;
  return sandbox;
}

if (options.mode === "build") {
  await buildBaseImage(loadPyodide, options.preloadModules, post, started);
} else {
  try {
    // `_makeSnapshot` makes Pyodide record how Python reached each JavaScript object, so
    // that this session can be imaged later (./interpreter-image.ts).
    const pyodide = await loadPyodide({
      ...quiet,
      _loadSnapshot: readFileSync(options.imagePath!),
      _makeSnapshot: true,
    });
    const sandbox = adopt(pyodide);
    sandbox.attach(bridge);
    sandbox.warm_up();
    baseline = new FsBaseline(pyodide.FS);
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
    info: { wasmBytes: activeMemory!.buffer.byteLength, loadMs: performance.now() - started },
  });
  setImmediate(idle);
}

/** Makes an image of the session, between runs: its memory snapshot and its files. */
function takeImage(): void {
  try {
    const pyodide = activePyodide!;
    const files = baseline!.diff(pyodide.FS);
    const snapshot = pyodide.makeMemorySnapshot({ serializer: imageSerializer(bridge) });
    post(
      {
        kind: "session-image",
        snapshot,
        filesJson: JSON.stringify(files.manifest),
        filesBlob: files.blob,
      },
      [snapshot.buffer as ArrayBuffer, files.blob.buffer as ArrayBuffer],
    );
  } catch (error) {
    post({ kind: "session-image-refused", reason: describe(error) });
  }
}

/**
 * Replaces this (fresh) process's interpreter by one loaded from a session image: its
 * memory, the JavaScript objects it held (the bridge), its files. The compiled WebAssembly
 * is reused, so this takes a fraction of a cold load.
 */
async function loadImage(message: Extract<SupervisorMessage, { kind: "restore" }>) {
  const loadStarted = performance.now();
  try {
    const manifest = JSON.parse(message.filesJson) as FilesManifest;
    // The image's memory may be larger than the one the interpreter module starts with.
    memoryGate.reserve(message.snapshot.byteLength - snapshotHeaderBytes(message.snapshot));
    const pyodide = await loadPyodide({
      ...quiet,
      _loadSnapshot: message.snapshot,
      _makeSnapshot: true,
      _snapshotDeserializer: imageDeserializer(bridge),
    });
    const sandbox = adopt(pyodide);
    baseline = new FsBaseline(pyodide.FS);
    applyFiles(pyodide.FS, manifest, message.filesBlob);
    sandbox.restored();
    post({
      kind: "restored",
      info: { wasmBytes: activeMemory!.buffer.byteLength, loadMs: performance.now() - loadStarted },
    });
  } catch (error) {
    post({ kind: "restore-failed", message: describe(error) });
  }
  // The interpreter this one replaced is garbage now: collect it while the answer travels.
  (globalThis as { gc?: () => void }).gc?.();
  idle();
}

/**
 * A Python exception that escaped into the event loop (an interrupt landing in asyncio's own
 * code) or any other stray error: it ends the current run.
 */
function onStray(error: unknown): void {
  strayFailure ??= error;
  stopRequested?.();
}

/** Blocks until the supervisor sends a run (or an image to take or load); starts it. */
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
      if (message.kind === "restore") {
        void loadImage(message);
        return;
      }
      if (message.kind === "snapshot") takeImage();
      else dispatch(message);
      continue;
    }
    Atomics.wait(control, CONTROL.wake, seen);
  }
}

async function execute(run: InterpreterRun): Promise<void> {
  runActive = true;
  stopping = false;
  strayFailure = null;
  memoryGate.startRun(run.memoryCapBytes);
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
