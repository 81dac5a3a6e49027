/**
 * Entry of a contained Pyodide child process: its main thread is the supervisor, which talks
 * to the server over a socket (fd 3, ./frames.ts) and runs one interpreter in a worker
 * thread (./interpreter.ts). One process holds at most one session.
 *
 * The supervisor never runs guest code, and it is the only thread that can stop the
 * interpreter while guest code holds it:
 * - `cpu_ms`: it samples the interpreter thread's CPU time (`worker.cpuUsage()`);
 * - `wall_ms`, cancellation and a denied call past `max_external_calls`: timers and messages;
 * - `memory_mb`: the flag the interpreter's memory gate sets, and, as a backstop against a
 *   guest that allocates through the JavaScript realm, the process's resident memory;
 * - threads the guest might start itself: the process's CPU time beyond the interpreter's.
 * It stops a run by writing SIGINT into Pyodide's interrupt buffer (Python raises
 * KeyboardInterrupt at its next check) and posting "stop" (ends a run that is waiting); if the
 * run has not ended `interruptGraceMs` later (a C-level loop, `except KeyboardInterrupt`), it
 * terminates the interpreter thread and reports the session reset.
 *
 * Output is cut at `max_stdout_bytes` here and sent on as it arrives; the server counts it
 * again and treats more than the cap as a protocol violation.
 * This module imports only Node built-ins and the backend's own dependency-free modules, so
 * a process starts quickly and holds little.
 *
 * @module
 */
import { Socket } from "node:net";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { MessageChannel, Worker } from "node:worker_threads";
import type { ToolCallReply } from "../../src/index.ts";
import { SupervisorImages } from "./child-image.ts";
import { encodeFrame, FrameDecoder } from "./frames.ts";
import type { InterpreterData } from "./interpreter.ts";
import {
  type ChildMessage,
  type ChildOptions,
  type ChildRunRequest,
  CONTROL,
  type InterpreterMessage,
  type InterpreterResult,
  type ParentMessage,
  type RunReport,
  SIGINT,
  type StopReason,
  type SupervisorMessage,
} from "./protocol.ts";

/** Largest frame accepted from the server (it is trusted; requests are bounded by its body limit). */
const MAX_INBOUND_FRAME_BYTES = 512 * 1_048_576;
/** How often limits that have no event of their own are sampled during a run, in ms. */
const SAMPLE_MS = 10;
/** How often the process is checked while no run is active, in ms. */
const IDLE_SAMPLE_MS = 1_000;
/** CPU ms per second the idle process may use (timers of Node itself) before it is ended. */
const IDLE_CPU_MS_PER_S = 200;

const options = JSON.parse(process.argv.at(-1) ?? "{}") as ChildOptions;
// Node's permission model lets a worker thread read its process's working directory (as of
// Node 24.21): with "/" as the working directory that is every file. This directory is
// readable anyway.
process.chdir(dirname(fileURLToPath(import.meta.url)));
const socket = new Socket({ fd: 3, readable: true, writable: true });
const decoder = new FrameDecoder(MAX_INBOUND_FRAME_BYTES);
let closing = false;
const send = (message: ChildMessage) => {
  if (!closing) socket.write(encodeFrame(message));
};
/** Sends what is queued, then exits. */
const closeAndExit = (code: number) => {
  if (closing) return;
  closing = true;
  socket.end(() => process.exit(code));
};

socket.on("data", (chunk: Buffer) => {
  let messages: unknown[];
  try {
    messages = decoder.push(chunk);
  } catch {
    process.exit(70);
  }
  for (const message of messages) onParentMessage(message as ParentMessage);
});
// The server is gone (or closed the session): nothing is left to serve.
socket.on("close", () => {
  if (!closing) process.exit(0);
});
socket.on("error", () => {
  if (!closing) process.exit(0);
});

const control = new SharedArrayBuffer(CONTROL.length * 4);
const interrupt = new SharedArrayBuffer(4);
const controlWords = new Int32Array(control);
const interruptWord = new Int32Array(interrupt);
const channel = new MessageChannel();
const workerData: InterpreterData = { options, control, interrupt, commands: channel.port2 };
const worker = new Worker(new URL("./interpreter.ts", import.meta.url), {
  workerData,
  transferList: [channel.port2],
  resourceLimits: {
    stackSizeMb: options.interpreterStackMb,
    maxOldGenerationSizeMb: options.interpreterHeapMb,
  },
  stdout: true,
  stderr: true,
});
worker.stdout.resume();
worker.stderr.resume();

const toInterpreter = (message: SupervisorMessage, transfer: ArrayBuffer[] = []) => {
  channel.port1.postMessage(message, transfer);
  Atomics.add(controlWords, CONTROL.wake, 1);
  Atomics.notify(controlWords, CONTROL.wake);
};

let ready = false;
let interpreterAlive = true;
let idleRssBytes = 0;
let lastMemoryBytes = 0;
let run: ActiveRun | null = null;
/** Resident memory the process may hold while no run is active (the last run's backstop). */
let idleRssLimitBytes = 0;
let ranSinceIdleSample = false;
const images = new SupervisorImages({
  imagePath: options.imagePath ?? "",
  headroomBytes: options.processMemoryHeadroomMb * 1_048_576,
  busy: () => !ready || run !== null || !interpreterAlive,
  send,
  toInterpreter,
  killInterpreter,
  closeAndExit,
  active: () => {
    ranSinceIdleSample = true;
  },
  restoring: (memoryCapBytes) => {
    // Loading holds the image twice for a moment: the backstop of a run of this session.
    idleRssLimitBytes = Math.max(
      idleRssLimitBytes,
      idleRssBytes + memoryCapBytes + options.processMemoryHeadroomMb * 1_048_576,
    );
  },
  restored: (wasmBytes) => {
    lastMemoryBytes = wasmBytes;
  },
});

worker.on("message", (message: InterpreterMessage) => onInterpreterMessage(message));
worker.on("error", (error) => interpreterGone(`the interpreter failed: ${error.message}`));
worker.on("exit", (code) => interpreterGone(`the interpreter thread exited (code ${code})`));

/**
 * Output of one stream, cut at the run's cap on a UTF-8 character boundary. What it keeps is
 * sent to the server at once ("output"), so the server streams it while the guest prints.
 */
class CappedText {
  readonly #capBytes: number;
  #bytes = 0;
  droppedBytes = 0;

  constructor(capBytes: number) {
    this.#capBytes = capBytes;
  }

  /** Keeps what fits of `text` and counts the rest; answers the part kept. */
  write(text: string, droppedBytes: number): string {
    this.droppedBytes += droppedBytes;
    if (text === "") return "";
    const room = this.#capBytes - this.#bytes;
    const bytes = Buffer.from(text, "utf8");
    if (bytes.byteLength <= room) {
      this.#bytes += bytes.byteLength;
      return text;
    }
    let cut = Math.max(0, room);
    // Back up to the start of a character (a UTF-8 continuation byte is 0b10xxxxxx).
    while (cut > 0 && (bytes[cut]! & 0xc0) === 0x80) cut--;
    this.#bytes += cut;
    this.droppedBytes += bytes.byteLength - cut;
    return bytes.toString("utf8", 0, cut);
  }
}

interface ActiveRun {
  request: ChildRunRequest;
  stop: StopReason | null;
  stdout: CappedText;
  stderr: CappedText;
  toolCalls: number;
  cpuStartMicros: number;
  cpuUsedMs: number;
  processCpuStartMicros: number;
  mainCpuStartMicros: number;
  wallTimer: NodeJS.Timeout;
  sampleTimer: NodeJS.Timeout | null;
  graceTimer: NodeJS.Timeout | null;
  rssLimitBytes: number;
  finished: boolean;
}

function onParentMessage(message: ParentMessage): void {
  switch (message?.kind) {
    case "run":
      startRun(message.run);
      return;
    case "tool-reply":
      if (!run || run.finished) return;
      toInterpreter({ kind: "tool-reply", callId: message.callId, reply: message.reply });
      if (!message.reply.ok && message.reply.fatal) stopRun("fatal");
      return;
    case "cancel":
      stopRun("cancelled");
      return;
    case "snapshot":
      images.snapshot(message.timeoutMs);
      return;
    case "restore":
      images.restore(message);
      return;
    default:
      return;
  }
}

function onInterpreterMessage(message: InterpreterMessage): void {
  switch (message.kind) {
    case "ready":
      ready = true;
      idleRssBytes = process.memoryUsage.rss();
      lastMemoryBytes = message.info.wasmBytes;
      send({ kind: "ready", info: { ...message.info, rssBytes: idleRssBytes } });
      watchIdle();
      return;
    case "image":
      send({
        kind: "image",
        base64: Buffer.from(message.bytes).toString("base64"),
        info: { ...message.info, rssBytes: process.memoryUsage.rss() },
      });
      closeAndExit(0);
      return;
    case "failed":
      send({ kind: "failed", message: String(message.message) });
      closeAndExit(1);
      return;
    case "output": {
      if (!run || run.finished) return;
      const stream = message.stream === 2 ? 2 : 1;
      const kept = (stream === 2 ? run.stderr : run.stdout).write(
        String(message.text),
        Math.max(0, Number(message.droppedBytes) || 0),
      );
      if (kept !== "") send({ kind: "output", stream, text: kept });
      return;
    }
    case "tool-call":
      onToolCall(message);
      return;
    case "session-image":
    case "session-image-refused":
    case "restored":
    case "restore-failed":
      images.fromInterpreter(message);
      return;
    case "done":
      if (run && !run.finished) void finishRun(message.result, false);
      return;
    default:
      return;
  }
}

function onToolCall(message: Extract<InterpreterMessage, { kind: "tool-call" }>): void {
  if (!run || run.finished) return;
  run.toolCalls += 1;
  // Past the budget the server denies the call and the run stops; calls after that one (or
  // after any stop) are refused here and never reach the server.
  if (run.stop || run.toolCalls > run.request.limits.max_external_calls + 1) {
    const reply: ToolCallReply = {
      ok: false,
      status: "denied",
      code: "RUN_CANCELLED",
      message: "The run is ending.",
      fatal: false,
    };
    toInterpreter({ kind: "tool-reply", callId: message.callId, reply });
    return;
  }
  send({
    kind: "tool-call",
    callId: message.callId,
    name: String(message.name),
    argsJson: String(message.argsJson),
    kwargsJson: String(message.kwargsJson),
  });
}

function startRun(request: ChildRunRequest): void {
  if (!ready || run || images.working || !interpreterAlive) return;
  images.served = true;
  const limits = request.limits;
  Atomics.store(interruptWord, 0, 0);
  Atomics.store(controlWords, CONTROL.memoryExhausted, 0);
  ranSinceIdleSample = true;
  const active: ActiveRun = {
    request,
    stop: null,
    stdout: new CappedText(limits.max_stdout_bytes),
    stderr: new CappedText(limits.max_stdout_bytes),
    toolCalls: 0,
    cpuStartMicros: 0,
    cpuUsedMs: 0,
    processCpuStartMicros: 0,
    mainCpuStartMicros: 0,
    wallTimer: setTimeout(() => stopRun("wall"), limits.wall_ms),
    sampleTimer: null,
    graceTimer: null,
    rssLimitBytes: idleRssBytes + (limits.memory_mb + options.processMemoryHeadroomMb) * 1_048_576,
    finished: false,
  };
  run = active;
  idleRssLimitBytes = Math.max(idleRssLimitBytes, active.rssLimitBytes);
  void worker.cpuUsage().then(
    (cpu) => {
      if (active.finished) return;
      const processCpu = process.cpuUsage();
      const mainCpu = process.threadCpuUsage();
      active.cpuStartMicros = cpu.user + cpu.system;
      active.processCpuStartMicros = processCpu.user + processCpu.system;
      active.mainCpuStartMicros = mainCpu.user + mainCpu.system;
      if (active.stop) {
        // Stopped (cancelled) before it reached the interpreter: nothing ran.
        void finishRun(
          { ...engineFailure(""), end: "ok", clock: { values: [], complete: true } },
          false,
        );
        return;
      }
      toInterpreter({
        kind: "run",
        run: { ...request, memoryCapBytes: limits.memory_mb * 1_048_576 },
      });
      scheduleSample(active);
    },
    () => interpreterGone("the interpreter thread is gone"),
  );
}

function scheduleSample(active: ActiveRun): void {
  active.sampleTimer = setTimeout(() => void sample(active), SAMPLE_MS);
}

/** Checks the limits that have no event of their own. */
async function sample(active: ActiveRun): Promise<void> {
  if (active.finished || !interpreterAlive) return;
  const limits = active.request.limits;
  if (Atomics.load(controlWords, CONTROL.memoryExhausted) !== 0) stopRun("memory");
  else if (process.memoryUsage.rss() > active.rssLimitBytes) stopRun("process_memory");
  else {
    const cpu = await worker.cpuUsage().catch(() => null);
    if (active.finished) return;
    if (cpu) {
      active.cpuUsedMs = (cpu.user + cpu.system - active.cpuStartMicros) / 1_000;
      if (active.cpuUsedMs > limits.cpu_ms) stopRun("cpu");
      else {
        const processCpu = process.cpuUsage();
        const mainCpu = process.threadCpuUsage();
        const otherMs =
          (processCpu.user +
            processCpu.system -
            active.processCpuStartMicros -
            (mainCpu.user + mainCpu.system - active.mainCpuStartMicros)) /
            1_000 -
          active.cpuUsedMs;
        // V8's helper threads (GC) work for the interpreter; allow them as much again.
        if (otherMs > limits.cpu_ms + active.cpuUsedMs) stopRun("process_cpu");
      }
    }
  }
  if (!active.finished) scheduleSample(active);
}

function stopRun(reason: StopReason): void {
  const active = run;
  if (!active || active.finished || active.stop) return;
  active.stop = reason;
  Atomics.store(interruptWord, 0, SIGINT);
  toInterpreter({ kind: "stop" });
  active.graceTimer = setTimeout(() => {
    if (active.finished) return;
    killInterpreter();
    void finishRun(
      engineFailure(
        `the interpreter did not stop within ${options.interruptGraceMs} ms of its interrupt`,
      ),
      true,
    );
  }, options.interruptGraceMs);
}

function engineFailure(detail: string): InterpreterResult {
  return {
    end: "engine_failed",
    resultJson: null,
    resultIssues: [],
    error: null,
    detail,
    stackOverflow: false,
    memoryBytes: lastMemoryBytes,
    clock: { values: [], complete: false },
  };
}

function killInterpreter(): void {
  interpreterAlive = false;
  void worker.terminate();
}

function interpreterGone(reason: string): void {
  if (!interpreterAlive) return;
  interpreterAlive = false;
  if (run && !run.finished) {
    void finishRun(engineFailure(reason), true);
    return;
  }
  if (!ready) send({ kind: "failed", message: reason });
  closeAndExit(1);
}

async function finishRun(result: InterpreterResult, reset: boolean): Promise<void> {
  const active = run;
  if (!active || active.finished) return;
  active.finished = true;
  clearTimeout(active.wallTimer);
  clearTimeout(active.sampleTimer ?? undefined);
  clearTimeout(active.graceTimer ?? undefined);
  if (interpreterAlive) {
    const cpu = await worker.cpuUsage().catch(() => null);
    if (cpu) active.cpuUsedMs = (cpu.user + cpu.system - active.cpuStartMicros) / 1_000;
  }
  const memoryExhausted = Atomics.load(controlWords, CONTROL.memoryExhausted) !== 0;
  if (memoryExhausted && !active.stop) active.stop = "memory";
  // An interpreter that failed, was terminated, or ran out of memory is not reused.
  const discard =
    reset || result.end === "engine_failed" || memoryExhausted || active.stop === "process_memory";
  if (result.memoryBytes > 0) lastMemoryBytes = result.memoryBytes;
  const report: RunReport = {
    end: result.end,
    resultJson: result.resultJson,
    resultIssues: result.resultIssues,
    error: result.error,
    detail: result.detail,
    stackOverflow: result.stackOverflow,
    stdoutDroppedBytes: active.stdout.droppedBytes,
    stderrDroppedBytes: active.stderr.droppedBytes,
    stop: active.stop,
    memoryExhausted,
    memoryBytes: lastMemoryBytes,
    cpuMs: Math.round(active.cpuUsedMs),
    reset: discard,
    clock: result.clock,
  };
  run = null;
  send({ kind: "done", report });
  if (discard) {
    killInterpreter();
    closeAndExit(0);
  }
}

/**
 * While no run is active the interpreter is blocked: a process that computes or grows then
 * runs something the guest left behind (a thread of its own), and is ended.
 */
function watchIdle(): void {
  idleRssLimitBytes = idleRssBytes + options.processMemoryHeadroomMb * 1_048_576;
  let last = process.cpuUsage();
  const timer = setInterval(() => {
    const now = process.cpuUsage();
    const usedMs = (now.user + now.system - last.user - last.system) / 1_000;
    last = now;
    if (run || images.working || ranSinceIdleSample) {
      ranSinceIdleSample = run !== null || images.working;
      return;
    }
    const overCpu = usedMs > IDLE_CPU_MS_PER_S * (IDLE_SAMPLE_MS / 1_000);
    if (overCpu || process.memoryUsage.rss() > idleRssLimitBytes) process.exit(71);
  }, IDLE_SAMPLE_MS);
  timer.unref();
}
