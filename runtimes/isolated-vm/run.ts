/**
 * One run of an isolated-vm session, from the host side: it enters the session's isolate in
 * *slices* (start the cell, deliver a tool reply, fire a timer), one at a time, each with a
 * time budget, and answers the guest's callbacks (output, tool calls, timers, the cell's end).
 *
 * Limits:
 * - cpu_ms and wall_ms: every slice runs with isolated-vm's `timeout` set to what is left of
 *   both (`isolate.cpuTime` counts the CPU used so far). isolated-vm terminates the slice when
 *   it is spent and the isolate stays usable. A slice's timeout runs on the steady clock while
 *   the isolate is active (paused during callbacks into this process), so under CPU contention
 *   a run can be stopped for cpu_ms having used less CPU than that, not later than V8 takes to
 *   notice the termination (milliseconds, unless the machine is badly oversubscribed). (Measured, and
 *   rejected: stretching timeouts by an estimated share of a core made runs overshoot or be
 *   disposed when the estimate lagged.) On Linux, isolated-vm counts a finished slice with
 *   the thread's CPU clock but reads a running one on the steady clock, so `cpuTime` is read
 *   only between slices.
 * - wall_ms also counts while the run waits (tool calls, timers): a host timer ends it.
 * - a slice still running `disposeGraceMs` after its budget is in one native operation V8
 *   cannot interrupt (a huge BigInt multiplication: isolated-vm issue #202). The isolate is
 *   disposed, the run answered at once and the session reset; the engine watches the stuck
 *   thread (see ./engine.ts).
 * - memory_mb: isolated-vm disposes an isolate past its `memoryLimit`; the run ends
 *   `MEMORY_LIMIT` and the session is reset.
 * - cancel: a waiting run ends at once; one still computing `disposeGraceMs` later can only be
 *   stopped by disposing its isolate (isolated-vm reaches V8's TerminateExecution only through
 *   `timeout`, fixed when a slice starts), so the session is reset.
 * - max_stdout_bytes: {@link OutputCapture}.
 *
 * @module
 */
import type IsolatedVm from "isolated-vm";
import {
  type CompiledCell,
  type Diagnostic,
  type ErrorObject,
  errorDiagnostic,
  errorObject,
  type JsonValue,
  OutputCapture,
  RESULT_ISSUE_SEPARATOR,
  RESULT_ISSUES_SEPARATOR,
  RunClock,
  type RunStatus,
  type RuntimeRunOutcome,
  type RuntimeRunRequest,
  resultNotJsonDiagnostic,
  type SessionId,
  type SessionLimits,
  type ToolBridge,
  validationOutcome,
} from "../../src/index.ts";
import { FinishKind, GuestOp, MAX_CROSSING_CHARS, MAX_PENDING_TIMERS, REFUSED } from "./guest.ts";
import { compileErrorMessage, compileErrorSpan, firstUserSpan, mapStack } from "./stack.ts";

/** How long the end of a run waits for the isolate's heap statistics, in ms. */
const HEAP_STATISTICS_WAIT_MS = 500;

/** What isolated-vm's `timeout` rejects with. */
const TIMED_OUT = "Script execution timed out.";

/** Why a run stopped before its cell settled. */
export type StopReason = "memory" | "cpu" | "wall" | "cancelled" | "fatal" | "crashed";

/** The part of a session a run works on (owned by ./engine.ts). */
export interface RunSession {
  readonly id: SessionId;
  /** Limits the session was created with: its isolate's memoryLimit comes from them. */
  readonly limits: SessionLimits;
  readonly isolate: IsolatedVm.Isolate;
  /** The bootstrap's entry point (see ./guest.ts). */
  readonly entry: IsolatedVm.Reference;
  toolsVersion: number;
  readonly cells: ReadonlyMap<string, CompiledCell>;
  /** Largest heap footprint seen at the end of a run, in bytes. */
  peakBytes: number;
  /** The isolate was disposed by this backend (not by isolated-vm's memory limit). */
  disposedByHost: boolean;
}

/** What a run asks of the engine that owns its session. */
export interface RunHooks {
  /** Milliseconds a slice may outlive its budget before its isolate is disposed. */
  readonly disposeGraceMs: number;
  /** Disposes the session's isolate while `busy` (a slice that may never return) is pending. */
  disposeIsolate(session: RunSession, busy: Promise<unknown> | null): void;
}

interface DescribedError {
  name: string;
  message: string;
  stack: string;
  code?: string;
  status?: string;
}

type SliceResult = { ok: true; value: unknown } | { ok: false };
type SettledSlice = { ok: true; value: unknown } | { ok: false; error: unknown };

interface Budget {
  /** isolated-vm timeout of the slice, in ms. */
  ms: number;
  kind: "cpu" | "wall";
}

let nextToken = 0;

/** See the module comment. */
export class ActiveRun {
  readonly #session: RunSession;
  readonly #request: RuntimeRunRequest;
  readonly #hooks: RunHooks;
  readonly #token = ++nextToken;
  readonly #stdout: OutputCapture;
  readonly #stderr: OutputCapture;
  readonly #wallDeadline: number;
  readonly #cpuLimitMs: number;
  readonly #cpuStart: bigint;
  readonly #timers = new Map<number, NodeJS.Timeout>();
  readonly #pendingCalls = new Set<number>();
  readonly #events: [op: number, a: number, b: string | number][] = [];
  readonly #onAbort: () => void;
  readonly #clock: RunClock;
  #cpuUsedMs = 0;
  #nextTimer = 0;
  #stopReason: StopReason | null = null;
  #crashMessage = "";
  #finished: { kind: number; text: string } | null = null;
  #busy: Promise<SettledSlice> | null = null;
  #abandon: (() => void) | null = null;
  #wake: (() => void) | null = null;
  #wallTimer: NodeJS.Timeout | undefined;
  #ended = false;
  /** The session's isolate is gone (memory limit, disposal, crash): the engine resets it. */
  sessionReset = false;

  constructor(session: RunSession, request: RuntimeRunRequest, hooks: RunHooks) {
    this.#session = session;
    this.#request = request;
    this.#hooks = hooks;
    this.#stdout = new OutputCapture(request.limits.max_stdout_bytes);
    this.#stderr = new OutputCapture(request.limits.max_stdout_bytes);
    this.#wallDeadline = performance.now() + request.limits.wall_ms;
    this.#cpuLimitMs = request.limits.cpu_ms;
    this.#cpuStart = session.isolate.cpuTime;
    this.#onAbort = () => this.stop("cancelled");
    this.#clock = new RunClock(request.determinism);
    request.signal.addEventListener("abort", this.#onAbort, { once: true });
    if (request.signal.aborted) this.#stopReason = "cancelled";
  }

  /** Compiles the cell in the isolate (V8's parser has the last word); runs nothing. */
  async validate(cell: CompiledCell): Promise<RuntimeRunOutcome> {
    try {
      const script = await this.#session.isolate.compileScript(cell.script, {
        filename: cell.filename,
      });
      script.release();
      return this.#outcome("ok", null, null);
    } catch (error) {
      if (this.#session.isolate.isDisposed) return this.#stopped("crashed");
      const message = error instanceof Error ? error.message : String(error);
      return validationOutcome(
        errorObject("SYNTAX_ERROR", `SyntaxError: ${compileErrorMessage(message)}`, {
          span: compileErrorSpan(message, cell),
        }),
      );
    }
  }

  /** Runs the cell until it settles or a limit stops it. */
  async execute(cell: CompiledCell): Promise<RuntimeRunOutcome> {
    if (this.#stopReason) return this.#stopped(this.#stopReason);
    const tools = this.#request.tools;
    const toolNames =
      this.#session.toolsVersion === tools.version ? "" : JSON.stringify(tools.names);
    this.#session.toolsVersion = tools.version;
    this.#armWallTimer();
    const started = await this.#slice([
      GuestOp.run,
      this.#token,
      JSON.stringify(this.#request.inputs),
      toolNames,
      `${cell.script}\n//# sourceURL=${cell.filename}`,
      this.#request.limits.max_stdout_bytes,
      this.#clock.seedText,
    ]);
    if (started.ok && typeof started.value === "string" && started.value !== "") {
      const failure = this.#startFailure(started.value, cell);
      if (failure) return failure;
    }
    for (;;) {
      if (!this.#stopReason && performance.now() >= this.#wallDeadline) this.stop("wall");
      if (this.#stopReason) return this.#stopped(this.#stopReason);
      if (this.#finished) return this.#settled(this.#finished, cell);
      const event = this.#events.shift();
      if (event) {
        const fired = await this.#slice(event);
        if (fired.ok && event[0] === GuestOp.fire && typeof fired.value === "string") {
          this.#uncaughtInTimer(fired.value, cell);
        }
        continue;
      }
      await new Promise<void>((resolve) => {
        this.#wake = () => {
          this.#wake = null;
          resolve();
        };
      });
    }
  }

  /** Ends the run for `reason` as soon as possible (see the module comment for cancel). */
  stop(reason: StopReason): void {
    if (this.#ended) return;
    this.#stopReason ??= reason;
    const busy = this.#busy;
    if (reason === "cancelled" && busy) {
      // A slice that ends by itself soon (a tool reply, a timer callback) keeps the session;
      // one still computing after the grace can only be stopped by disposing its isolate.
      setTimeout(() => {
        if (this.#busy === busy) this.#disposeBusy();
      }, this.#hooks.disposeGraceMs);
    }
    this.#wake?.();
  }

  /** The isolate suffered a catastrophic error (isolated-vm `onCatastrophicError`). */
  crash(message: string): void {
    this.#crashMessage = message;
    this.sessionReset = true;
    this.#stopReason = /out[- ]of[- ]memory/i.test(message) ? "memory" : "crashed";
    this.#abandon?.();
    this.#wake?.();
  }

  /** Outcome for a failure of this host while running (a bug): the session is reset. */
  hostFailure(error: unknown): Promise<RuntimeRunOutcome> {
    this.#crashMessage = `host: ${error instanceof Error ? error.message : String(error)}`;
    this.sessionReset = true;
    return this.#stopped("crashed");
  }

  /** Releases timers, listeners and pending calls; later guest callbacks are ignored. */
  finish(): void {
    this.#ended = true;
    clearTimeout(this.#wallTimer);
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    this.#pendingCalls.clear();
    this.#events.length = 0;
    this.#request.signal.removeEventListener("abort", this.#onAbort);
  }

  // Guest callbacks (see ./guest.ts). They check their arguments again and never throw.

  /**
   * `print` callback: appends `text` to stdout (`stream` 1) or stderr (2), and counts
   * `droppedBytes` (UTF-8) the guest did not send because the stream was past its cap.
   */
  print(stream: unknown, text: unknown, droppedBytes: unknown): void {
    if (this.#ended || typeof text !== "string") return;
    const capture = stream === 2 ? this.#stderr : this.#stdout;
    const kept = capture.write(text);
    if (typeof droppedBytes === "number") capture.drop(droppedBytes);
    if (kept !== "" && this.#request.onOutput) {
      try {
        this.#request.onOutput(stream === 2 ? "stderr" : "stdout", kept);
      } catch {
        // A listener's failure must not reach the guest.
      }
    }
  }

  /**
   * `now` callback: the clock guest code reads (see RunClock); answers even once the run is
   * settling, so encoding a result that reads the clock replays the same.
   */
  now(): number {
    return this.#clock.now();
  }

  /**
   * `startCall` callback: starts tool call `id` (numbered by the prelude) through the run's
   * {@link ToolBridge}; answers 0 (the reply is delivered later as a slice), or `REFUSED` when
   * the run is stopping or the arguments are not what the prelude sends.
   */
  startCall(id: unknown, name: unknown, argsJson: unknown, kwargsJson: unknown): number {
    if (this.#ended || this.#stopReason) return REFUSED;
    if (typeof name !== "string" || typeof argsJson !== "string" || typeof kwargsJson !== "string")
      return REFUSED;
    if (typeof id !== "number" || !Number.isSafeInteger(id) || this.#pendingCalls.has(id)) {
      return REFUSED;
    }
    this.#pendingCalls.add(id);
    void this.#request.tools.call(name, argsJson, kwargsJson).then((reply) => {
      if (!this.#pendingCalls.delete(id) || this.#ended) return;
      if (!reply.ok && reply.fatal) this.stop("fatal");
      const text = reply.ok
        ? `{"ok":true,"value":${reply.valueJson}}`
        : JSON.stringify({
            ok: false,
            code: reply.code,
            message: reply.message,
            status: reply.status,
          });
      this.#events.push([GuestOp.settle, id, text]);
      this.#wake?.();
    });
    return 0;
  }

  /**
   * `setTimer` callback: arms a host timer for `delayMs` (clamped to 0…2^31-1 ms); answers its
   * id, or `REFUSED` past `MAX_PENDING_TIMERS` pending. Timers die with the run.
   */
  setTimer(delayMs: unknown): number {
    if (this.#ended || this.#timers.size >= MAX_PENDING_TIMERS) return REFUSED;
    const id = ++this.#nextTimer;
    const delay =
      typeof delayMs === "number" && Number.isFinite(delayMs)
        ? Math.min(Math.max(0, delayMs), 2_147_483_647)
        : 0;
    this.#timers.set(
      id,
      setTimeout(() => {
        this.#timers.delete(id);
        this.#events.push([GuestOp.fire, id, 0]);
        this.#wake?.();
      }, delay),
    );
    return id;
  }

  /** `clearTimer` callback: disarms a timer of this run. */
  clearTimer(id: unknown): void {
    if (typeof id !== "number") return;
    clearTimeout(this.#timers.get(id));
    this.#timers.delete(id);
  }

  /**
   * `finish` callback: the cell's promise settled (`kind`, see `FinishKind`). Only the first
   * report carrying this run's token counts; leftovers of earlier runs are ignored.
   */
  finishCell(token: unknown, kind: unknown, text: unknown): void {
    if (this.#ended || this.#finished || token !== this.#token) return;
    if (typeof kind !== "number" || typeof text !== "string") return;
    this.#finished = { kind, text };
  }

  // Slices

  /** Enters the isolate once through the bootstrap's entry point, within the run's budget. */
  async #slice(args: (string | number)[]): Promise<SliceResult> {
    const budget = this.#budget();
    if (budget.ms < 1) {
      this.stop(budget.kind);
      return { ok: false };
    }
    const started = performance.now();
    let pending: Promise<SettledSlice>;
    try {
      pending = this.#session.entry.apply(undefined, args, { timeout: budget.ms }).then(
        (value: unknown) => ({ ok: true as const, value }),
        (error: unknown) => ({ ok: false as const, error }),
      );
    } catch (error) {
      pending = Promise.resolve({ ok: false, error });
    }
    this.#busy = pending;
    const abandoned = new Promise<null>((resolve) => {
      this.#abandon = () => resolve(null);
    });
    const guard = setTimeout(() => {
      if (this.#busy !== pending) return;
      // The slice never ends normally: take isolated-vm's running figure (its steady-clock
      // time on the thread) as the CPU it used.
      this.#sampleCpu();
      this.stop(budget.kind);
      this.#disposeBusy();
    }, budget.ms + this.#hooks.disposeGraceMs);
    try {
      const settled = await Promise.race([pending, abandoned]);
      this.#sampleCpu();
      if (settled === null) return { ok: false };
      if (settled.ok) return settled;
      this.#sliceFailed(settled.error, budget, performance.now() - started);
      return { ok: false };
    } finally {
      clearTimeout(guard);
      this.#busy = null;
      this.#abandon = null;
    }
  }

  /** Classifies a slice that rejected. */
  #sliceFailed(error: unknown, budget: Budget, elapsedMs: number): void {
    const message = error instanceof Error ? error.message : "";
    const session = this.#session;
    if (session.isolate.isDisposed) {
      this.sessionReset = true;
      if (/memory limit/.test(message)) this.stop("memory");
      else if (!session.disposedByHost) this.stop("crashed");
      return;
    }
    // isolated-vm's timeout; a guest error with the same text thrown early is not one.
    if (message === TIMED_OUT && elapsedMs >= budget.ms * 0.9) {
      this.stop(budget.kind);
      return;
    }
    // Anything else is the first promise rejection the slice left unhandled, which
    // isolated-vm reports in place of the slice's answer. The slice itself completed; like an
    // unhandled rejection in the QuickJS backend, it does not end the run.
  }

  /** Disposes the isolate under a slice that did not return, and lets the run end now. */
  #disposeBusy(): void {
    if (!this.#busy) return;
    this.#sampleCpu();
    this.sessionReset = true;
    this.#hooks.disposeIsolate(this.#session, this.#busy);
    this.#abandon?.();
  }

  #budget(): Budget {
    this.#sampleCpu();
    const wallLeft = this.#wallDeadline - performance.now();
    const cpuLeft = this.#cpuLimitMs - this.#cpuUsedMs;
    return cpuLeft < wallLeft
      ? { ms: Math.floor(cpuLeft), kind: "cpu" }
      : { ms: Math.floor(wallLeft), kind: "wall" };
  }

  #sampleCpu(): void {
    if (this.#session.isolate.isDisposed) return;
    try {
      this.#cpuUsedMs = Number(this.#session.isolate.cpuTime - this.#cpuStart) / 1e6;
    } catch {
      // Disposed meanwhile: keep the last sample.
    }
  }

  #armWallTimer(): void {
    const remaining = Math.max(0, this.#wallDeadline - performance.now());
    this.#wallTimer = setTimeout(() => {
      // While a slice runs, its own timeout (and the dispose guard) ends it.
      if (!this.#busy) this.stop("wall");
    }, remaining + 1);
  }

  // Outcomes

  #startFailure(answer: string, cell: CompiledCell): Promise<RuntimeRunOutcome> | null {
    let parsed: { kind?: string; message?: string; error?: string };
    try {
      parsed = JSON.parse(answer) as typeof parsed;
    } catch {
      return null;
    }
    if (parsed.kind === "input") {
      return Promise.resolve(
        validationOutcome(errorObject("INVALID_INPUT", String(parsed.message))),
      );
    }
    if (parsed.kind !== "compile") return null;
    const described = parseDescribed(parsed.error ?? "");
    if (described.name === "SyntaxError") {
      return Promise.resolve(
        validationOutcome(
          errorObject("SYNTAX_ERROR", `SyntaxError: ${described.message}`, {
            span: firstUserSpan(described.stack, cell),
          }),
        ),
      );
    }
    // The engine refused to start the cell's global code (e.g. a `var` on a frozen global).
    return this.#runtimeError(described, cell);
  }

  #uncaughtInTimer(answer: string, cell: CompiledCell): void {
    if (answer === "") return;
    const described = parseDescribed(answer);
    const stack = mapStack(described.stack, cell, this.#session.cells);
    this.#stderr.write(
      `Uncaught in a timer: ${described.name}: ${described.message}\n${stack ? `${stack}\n` : ""}`,
    );
  }

  #settled(
    finished: { kind: number; text: string },
    cell: CompiledCell,
  ): Promise<RuntimeRunOutcome> {
    if (finished.kind === FinishKind.rejected) {
      return this.#runtimeError(parseDescribed(finished.text), cell);
    }
    const text = finished.text;
    const diagnostics: Diagnostic[] = [];
    if (!cell.hasResult) return this.#outcome("ok", null, null, diagnostics);
    if (finished.kind === FinishKind.tooLarge || text.length > MAX_CROSSING_CHARS) {
      diagnostics.push({
        severity: "warning",
        code: "RESULT_NOT_JSON",
        message: `The result is larger than ${MAX_CROSSING_CHARS} characters of JSON and was dropped.`,
        hint: "Return a smaller value, or store large data with a tool.",
        span: null,
      });
      return this.#outcome("ok", null, null, diagnostics);
    }
    const separator = text.indexOf(RESULT_ISSUES_SEPARATOR);
    const json = separator >= 0 ? text.slice(0, separator) : text;
    let result: JsonValue;
    try {
      result = JSON.parse(json) as JsonValue;
    } catch {
      result = json;
      diagnostics.push(resultNotJsonDiagnostic(["output the engine could not encode"]));
    }
    if (separator >= 0) {
      diagnostics.push(
        resultNotJsonDiagnostic(text.slice(separator + 1).split(RESULT_ISSUE_SEPARATOR)),
      );
    }
    return this.#outcome("ok", result, null, diagnostics);
  }

  #runtimeError(described: DescribedError, cell: CompiledCell): Promise<RuntimeRunOutcome> {
    const stack = mapStack(described.stack, cell, this.#session.cells);
    const where = firstUserSpan(described.stack, cell);
    const headline = `${described.name}: ${described.message}`;
    this.#stderr.write(`${headline}\n${stack ? `${stack}\n` : ""}`);
    if (
      described.name === "RangeError" &&
      described.message === "Maximum call stack size exceeded"
    ) {
      return this.#outcome(
        "resource_exhausted",
        null,
        errorObject("STACK_LIMIT", "The run nested calls deeper than V8's stack allows.", {
          span: where,
          hint: "Recurse less deeply (max_stack_depth does not raise V8's stack; see docs/limits.md).",
        }),
      );
    }
    const code =
      described.name === "ToolError" && described.code ? described.code : "RUNTIME_ERROR";
    return this.#outcome("runtime_error", null, errorObject(code, headline, { span: where }));
  }

  #stopped(reason: StopReason): Promise<RuntimeRunOutcome> {
    const limits = this.#request.limits;
    switch (reason) {
      case "memory":
        this.sessionReset = true;
        return this.#outcome(
          "resource_exhausted",
          null,
          errorObject(
            "MEMORY_LIMIT",
            `The run tried to use more than memory_mb (${this.#session.limits.memory_mb} MiB); the session was reset.`,
            { hint: "Hold less data at once, or create the session with a larger memory_mb." },
          ),
        );
      case "cpu": {
        const used = Math.round(this.#cpuUsedMs);
        const head =
          used >= limits.cpu_ms
            ? `The run used more than cpu_ms (${limits.cpu_ms} ms) of CPU time`
            : `The run executed guest code for cpu_ms (${limits.cpu_ms} ms) without finishing; V8 counted ${used} ms of CPU time in it (the rest went to waiting for a CPU core)`;
        const tail = this.sessionReset
          ? "; it was inside an operation V8 could not interrupt, so its isolate was disposed and the session was reset."
          : ".";
        return this.#outcome("timeout", null, errorObject("CPU_TIME_LIMIT", head + tail));
      }
      case "wall":
        return this.#outcome(
          "timeout",
          null,
          errorObject(
            "WALL_TIME_LIMIT",
            this.sessionReset
              ? `The run took longer than wall_ms (${limits.wall_ms} ms) inside an operation V8 could not interrupt; its isolate was disposed and the session was reset.`
              : `The run took longer than wall_ms (${limits.wall_ms} ms).`,
          ),
        );
      case "cancelled":
        return this.#outcome(
          "cancelled",
          null,
          errorObject(
            "RUN_CANCELLED",
            this.sessionReset
              ? "The run was cancelled while computing; its isolate was disposed and the session was reset."
              : "The run was cancelled.",
          ),
        );
      case "fatal":
        return this.#outcome(
          "resource_exhausted",
          null,
          errorObject(
            "EXTERNAL_CALL_LIMIT",
            `The run made more than max_external_calls (${limits.max_external_calls}) tool calls.`,
          ),
        );
      default:
        this.sessionReset = true;
        return this.#outcome(
          "interrupted",
          null,
          errorObject(
            "ENGINE_CRASHED",
            `The V8 isolate under this run failed${this.#crashMessage ? ` (${this.#crashMessage})` : ""}; the session was reset.`,
          ),
        );
    }
  }

  async #outcome(
    status: RunStatus,
    result: JsonValue | null,
    error: ErrorObject | null,
    extra: Diagnostic[] = [],
  ): Promise<RuntimeRunOutcome> {
    const diagnostics: Diagnostic[] = [];
    if (error) diagnostics.push(errorDiagnostic(error));
    diagnostics.push(...extra);
    for (const [capture, stream] of [
      [this.#stdout, "stdout"],
      [this.#stderr, "stderr"],
    ] as const) {
      const truncated = capture.truncationDiagnostic(stream);
      if (truncated) diagnostics.push(truncated);
    }
    if (this.sessionReset) {
      diagnostics.push({
        severity: "info",
        code: "SESSION_RESET",
        message: "The session's state was discarded; its next run starts empty.",
        hint: null,
        span: null,
      });
    }
    return {
      status,
      result,
      stdout: this.#stdout.text,
      stderr: this.#stderr.text,
      diagnostics,
      error,
      memoryPeakBytes: await this.#memoryPeakBytes(error?.code === "MEMORY_LIMIT"),
      instructions: 0,
      cpuMs: Math.round(this.#cpuUsedMs),
      sessionReset: this.sessionReset,
      clock: this.#clock.record,
    };
  }

  /** Heap footprint (V8 total heap + external memory) at the end, as a session high-water mark. */
  async #memoryPeakBytes(hitLimit: boolean): Promise<number> {
    const session = this.#session;
    if (hitLimit) return session.limits.memory_mb * 1_048_576;
    if (session.isolate.isDisposed || this.#busy || this.#crashMessage) return session.peakBytes;
    let timer: NodeJS.Timeout | undefined;
    try {
      const heap = await Promise.race([
        session.isolate.getHeapStatistics(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(reject, HEAP_STATISTICS_WAIT_MS);
        }),
      ]);
      const bytes = heap.total_heap_size + heap.externally_allocated_size;
      session.peakBytes = Math.max(session.peakBytes, bytes);
    } catch {
      // Disposed meanwhile, or the isolate did not answer in time: keep the last figure.
    } finally {
      clearTimeout(timer);
    }
    return session.peakBytes;
  }
}

function parseDescribed(text: string): DescribedError {
  try {
    const value = JSON.parse(text) as Partial<DescribedError>;
    return {
      name: String(value.name ?? "Error"),
      message: String(value.message ?? ""),
      stack: typeof value.stack === "string" ? value.stack : "",
      ...(typeof value.code === "string" ? { code: value.code } : {}),
      ...(typeof value.status === "string" ? { status: value.status } : {}),
    };
  } catch {
    return { name: "Error", message: "(an error that could not be described)", stack: "" };
  }
}
