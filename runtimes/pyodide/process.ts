/**
 * The server's handle on one contained Pyodide child process: spawns it, speaks the framed
 * protocol with it, and treats everything it sends as hostile input.
 *
 * A child is in one state at a time — starting, idle, running, imaging, dead — and may send
 * only what that state expects: "ready" (or "failed") while starting; while running,
 * "output" (at most `max_stdout_bytes` per stream), "tool-call" (at most
 * `max_external_calls` + 1 of them) and one "done"; while imaging, the one answer to the
 * image asked for. Anything else, a frame that is not JSON, larger than the limit or not of
 * the right shape, is a protocol violation: the process is killed (its whole process group)
 * and its run, if any, ends `ENGINE_CRASHED`.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import type { Socket } from "node:net";
import type { RuntimeRunRequest, ToolCallReply } from "../../src/index.ts";
import type { ChildCommand, Containment } from "./containment.ts";
import { encodeFrame, FrameDecoder } from "./frames.ts";
import type { RunOutput } from "./outcome.ts";
import {
  type ChildMessage,
  type ChildRunRequest,
  type ParentMessage,
  parseChildMessage,
  type ReadyInfo,
  type RunReport,
} from "./protocol.ts";

/** Largest frame accepted from a child (a report carries at most two capped outputs and a result). */
const MAX_FRAME_BYTES = 256 * 1_048_576;
/** Bytes of a child's stderr kept, to explain a failed start. */
const STDERR_TAIL_BYTES = 4_096;

/** Why a child went away, for reports. */
export interface ChildExit {
  reason: string;
  /** It broke the protocol. */
  violation: boolean;
}

/** What a child built (build mode). */
export interface BuiltImage {
  bytes: Buffer;
  info: ReadyInfo;
}

type State = "starting" | "idle" | "running" | "imaging" | "dead";

/** A session image the child made (./image-delta.ts); the server only carries its bytes. */
export interface ChildImage {
  bytes: Buffer;
  heapBytes: number;
  changedPages: number;
}

/** The child could not make an image of its session now; the message says why. */
export class ImageRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ImageRefused";
  }
}

interface PendingImage {
  kind: "snapshot" | "restore";
  resolve(value: ChildImage | ReadyInfo): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/** How a run ended: the child's report, or a synthetic one when the process died under it. */
export interface RunEnding {
  report: RunReport;
  /** The process died without reporting (crash, kill, watchdog). */
  crashed: boolean;
}

interface PendingRun {
  resolve(ending: RunEnding): void;
  bridge: RuntimeRunRequest["tools"];
  output: RunOutput;
  maxToolCalls: number;
  toolCalls: number;
  watchdog: NodeJS.Timeout;
  watchdogFired: boolean;
}

/** One contained child process (see the module comment); serves at most one session. */
export class PyodideProcess {
  readonly #child: ChildProcess;
  readonly #socket: Socket;
  readonly #decoder = new FrameDecoder(MAX_FRAME_BYTES);
  readonly #exitListeners: ((exit: ChildExit) => void)[] = [];
  #state: State = "starting";
  #stderrTail = "";
  #run: PendingRun | null = null;
  #image: PendingImage | null = null;
  /** Runs started or images loaded: a process that served anything loads no image. */
  #served = false;
  #exit: ChildExit | null = null;
  #readyInfo: ReadyInfo | null = null;
  #onReady!: (info: ReadyInfo) => void;
  #onStartFailed!: (error: Error) => void;
  #onImage: ((image: BuiltImage) => void) | null = null;
  /** Resolves when the interpreter is ready; rejects when the child fails to start. */
  readonly ready: Promise<ReadyInfo>;
  /** Milliseconds from spawn to ready. */
  startMs = 0;
  readonly #spawnedAt = performance.now();

  constructor(containment: Containment, spec: ChildCommand) {
    this.ready = new Promise<ReadyInfo>((resolve, reject) => {
      this.#onReady = resolve;
      this.#onStartFailed = reject;
    });
    this.ready.catch(() => {});
    const command = containment.command(spec);
    this.#child = spawn(command.file, command.args, {
      env: {},
      stdio: ["ignore", "ignore", "pipe", "pipe"],
      // Its own process group: killing the group reaches the wrapper and Node inside it.
      detached: true,
    });
    this.#socket = this.#child.stdio[3] as Socket;
    this.#child.stderr?.on("data", (chunk: Buffer) => {
      this.#stderrTail = (this.#stderrTail + chunk.toString("utf8")).slice(-STDERR_TAIL_BYTES);
    });
    this.#socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    this.#socket.on("error", () => {});
    this.#child.on("error", (error) =>
      this.#gone({ reason: `cannot start: ${error.message}`, violation: false }),
    );
    this.#child.on("exit", (code, signal) =>
      this.#gone({
        reason: signal ? `killed by ${signal}` : `exit code ${code}`,
        violation: false,
      }),
    );
  }

  /** Process id of the wrapper (or of Node when uncontained). */
  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** False once the process has exited or was killed. */
  get alive(): boolean {
    return this.#state !== "dead";
  }

  /** A run is in progress. */
  get busy(): boolean {
    return this.#state === "running";
  }

  /** What the child reported when its interpreter became ready (null before). */
  get readyInfo(): ReadyInfo | null {
    return this.#readyInfo;
  }

  /** Calls `listener` once when the process is gone. */
  onExit(listener: (exit: ChildExit) => void): void {
    if (this.#exit) listener(this.#exit);
    else this.#exitListeners.push(listener);
  }

  /** Waits for a build-mode child's base image. */
  image(): Promise<BuiltImage> {
    return new Promise<BuiltImage>((resolve, reject) => {
      this.#onImage = resolve;
      this.onExit((exit) => reject(new Error(this.#explain(exit))));
    });
  }

  /**
   * Runs one cell. Resolves with the child's report, or with a synthetic one when the child
   * dies or is killed by the watchdog (`watchdogMs` after the start). Never rejects. Output
   * goes to `output` as the child sends it.
   */
  run(
    request: ChildRunRequest,
    runtimeRequest: RuntimeRunRequest,
    watchdogMs: number,
    output: RunOutput,
  ): Promise<RunEnding> {
    if (this.#state !== "idle") {
      return Promise.resolve({
        report: lostReport(`the engine process is ${this.#state}`),
        crashed: true,
      });
    }
    this.#state = "running";
    this.#served = true;
    return new Promise<RunEnding>((resolve) => {
      const pending: PendingRun = {
        resolve,
        bridge: runtimeRequest.tools,
        output,
        maxToolCalls: request.limits.max_external_calls + 1,
        toolCalls: 0,
        watchdog: setTimeout(() => {
          pending.watchdogFired = true;
          this.kill();
        }, watchdogMs),
        watchdogFired: false,
      };
      this.#run = pending;
      const onAbort = () => this.#post({ kind: "cancel" });
      runtimeRequest.signal.addEventListener("abort", onAbort, { once: true });
      const finish = (ending: RunEnding) => {
        clearTimeout(pending.watchdog);
        runtimeRequest.signal.removeEventListener("abort", onAbort);
        resolve(ending);
      };
      pending.resolve = finish;
      this.#post({ kind: "run", run: request });
      if (runtimeRequest.signal.aborted) onAbort();
    });
  }

  /**
   * Asks for an image of the session between runs. Resolves with the encoded image; rejects
   * with {@link ImageRefused} (the session is as it was), or an Error when the process died
   * or did not answer within `timeoutMs` (it is killed; the session's state is gone).
   */
  snapshot(timeoutMs: number): Promise<ChildImage> {
    return this.#imageWork(
      "snapshot",
      { kind: "snapshot", timeoutMs },
      timeoutMs,
    ) as Promise<ChildImage>;
  }

  /**
   * Loads a session image in place of the base image's interpreter, in a process that has
   * served nothing yet. Resolves when the process serves that session; rejects (and the
   * process is gone) when the image does not load within `timeoutMs`.
   */
  restore(image: Uint8Array, memoryCapBytes: number, timeoutMs: number): Promise<ReadyInfo> {
    if (this.#served) return Promise.reject(new Error("the process has served a session"));
    this.#served = true;
    const message: ParentMessage = {
      kind: "restore",
      image: Buffer.from(image.buffer, image.byteOffset, image.byteLength).toString("base64"),
      memoryCapBytes,
      timeoutMs,
    };
    return this.#imageWork("restore", message, timeoutMs) as Promise<ReadyInfo>;
  }

  #imageWork(
    kind: PendingImage["kind"],
    message: ParentMessage,
    timeoutMs: number,
  ): Promise<ChildImage | ReadyInfo> {
    if (this.#state !== "idle") {
      return Promise.reject(new Error(`the engine process is ${this.#state}`));
    }
    this.#state = "imaging";
    return new Promise((resolve, reject) => {
      // The child gives up at `timeoutMs`; this is the backstop when it cannot.
      const timer = setTimeout(() => {
        this.kill();
        reject(new Error(`the engine process did not answer within ${timeoutMs} ms`));
      }, timeoutMs + 2_000);
      this.#image = { kind, resolve, reject, timer };
      this.#post(message);
    });
  }

  #imageDone(): PendingImage | null {
    const image = this.#image;
    this.#image = null;
    if (image) clearTimeout(image.timer);
    return image;
  }

  /** Kills the process and everything it started. */
  kill(): void {
    const pid = this.#child.pid;
    if (pid !== undefined && this.#exit === null) {
      try {
        process.kill(-pid, "SIGKILL");
      } catch {
        this.#child.kill("SIGKILL");
      }
    }
    this.#socket.destroy();
  }

  #post(message: ParentMessage): void {
    if (this.#state !== "dead" && this.#socket.writable) this.#socket.write(encodeFrame(message));
  }

  #onData(chunk: Buffer): void {
    let frames: unknown[];
    try {
      frames = this.#decoder.push(chunk);
    } catch (error) {
      this.#violation((error as Error).message);
      return;
    }
    for (const frame of frames) {
      if (this.#state === "dead") return;
      let message: ChildMessage;
      try {
        message = parseChildMessage(frame);
      } catch (error) {
        this.#violation((error as Error).message);
        return;
      }
      this.#onMessage(message);
    }
  }

  #onMessage(message: ChildMessage): void {
    const problem = this.#handle(message);
    if (problem) this.#violation(problem);
  }

  /** Acts on a message; answers what was wrong with it, or null. */
  #handle(message: ChildMessage): string | null {
    const run = this.#run;
    switch (message.kind) {
      case "ready":
        if (this.#state !== "starting" || this.#onImage) return "unexpected ready";
        this.#state = "idle";
        this.#readyInfo = message.info;
        this.startMs = performance.now() - this.#spawnedAt;
        this.#onReady(message.info);
        return null;
      case "image":
        if (this.#state !== "starting" || !this.#onImage) return "unexpected image";
        this.#onImage({ bytes: Buffer.from(message.base64, "base64"), info: message.info });
        this.#onImage = null;
        return null;
      case "failed":
        if (this.#state !== "starting") return "unexpected failure message";
        this.#gone({ reason: `failed to start: ${message.message}`, violation: false });
        this.kill();
        return null;
      case "output":
        if (this.#state !== "running" || !run) return "unexpected output";
        if (!run.output.receive(message.stream, message.text)) {
          return "more output than max_stdout_bytes";
        }
        return null;
      case "tool-call":
        if (this.#state !== "running" || !run) return "unexpected tool call";
        run.toolCalls += 1;
        if (run.toolCalls > run.maxToolCalls) return "more tool calls than the budget allows";
        void run.bridge
          .call(message.name, message.argsJson, message.kwargsJson)
          .then((reply: ToolCallReply) => {
            if (this.#run === run)
              this.#post({ kind: "tool-reply", callId: message.callId, reply });
          });
        return null;
      case "session-image":
      case "session-image-refused": {
        if (this.#state !== "imaging" || this.#image?.kind !== "snapshot") {
          return "unexpected session image";
        }
        const image = this.#imageDone()!;
        this.#state = "idle";
        if (message.kind === "session-image-refused")
          image.reject(new ImageRefused(message.reason));
        else {
          image.resolve({
            bytes: Buffer.from(message.base64, "base64"),
            heapBytes: message.heapBytes,
            changedPages: message.changedPages,
          });
        }
        return null;
      }
      case "restored":
        if (this.#state !== "imaging" || this.#image?.kind !== "restore") {
          return "unexpected restored";
        }
        this.#state = "idle";
        this.#readyInfo = message.info;
        this.#imageDone()!.resolve(message.info);
        return null;
      case "restore-failed":
        if (this.#state !== "imaging" || this.#image?.kind !== "restore") {
          return "unexpected restore failure";
        }
        this.#imageDone()!.reject(new Error(message.message));
        this.#gone({ reason: `failed to load an image: ${message.message}`, violation: false });
        this.kill();
        return null;
      case "done":
        if (this.#state !== "running" || !run) return "unexpected report";
        this.#run = null;
        this.#state = message.report.reset ? "dead" : "idle";
        if (message.report.reset) this.kill();
        run.resolve({ report: message.report, crashed: false });
        return null;
      default:
        return "unknown message";
    }
  }

  #violation(what: string): void {
    this.#gone({ reason: `broke the engine protocol (${what})`, violation: true });
    this.kill();
  }

  #gone(exit: ChildExit): void {
    if (this.#exit) return;
    this.#exit = exit;
    const wasStarting = this.#state === "starting";
    this.#state = "dead";
    if (wasStarting) this.#onStartFailed(new Error(this.#explain(exit)));
    this.#imageDone()?.reject(new Error(this.#explain(exit)));
    const run = this.#run;
    this.#run = null;
    if (run) {
      run.resolve({
        report: run.watchdogFired
          ? { ...lostReport("the engine process outlived wall_ms and was killed"), stop: "wall" }
          : lostReport(`the engine process stopped (${exit.reason})`),
        crashed: true,
      });
    }
    for (const listener of this.#exitListeners.splice(0)) listener(exit);
  }

  #explain(exit: ChildExit): string {
    const tail = this.#stderrTail.trim().split("\n").slice(-6).join("\n");
    return `The Pyodide process ${exit.reason}${tail ? `: ${tail}` : ""}`;
  }
}

/** A report for a run whose process died under it. */
export function lostReport(detail: string): RunReport {
  return {
    end: "engine_failed",
    resultJson: null,
    resultIssues: [],
    error: null,
    detail,
    stackOverflow: false,
    stdoutDroppedBytes: 0,
    stderrDroppedBytes: 0,
    stop: null,
    memoryExhausted: false,
    memoryBytes: 0,
    cpuMs: 0,
    reset: true,
    clock: { values: [], complete: false },
  };
}
