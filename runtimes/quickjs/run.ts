/**
 * One run of a QuickJS session: limits, output, tool calls, timers, and how it ends.
 *
 * A run is *open* while its cell executes: guest code may then print, call tools and arm
 * timers through the prelude's host bindings. Once the outcome is being decided (the cell's
 * promise settled, a limit stopped it, or it is being torn down) the run is *closed*: guest
 * code may still execute (encoding the result, leftover promise jobs) under the run's limits,
 * but every binding refuses, so nothing it does reaches the host or outlives the run.
 *
 * Limits are checked by QuickJS's interrupt handler (every few thousand bytecodes), at every
 * host call and when the run ends: memory (the gated WebAssembly memory), CPU time (the
 * thread's), wall time, cancellation (the signal, or a shared flag for worker threads), and
 * the tool-call budget, which the engine counts itself so a synchronous flood of calls stops
 * at once. The interrupt QuickJS raises cannot be caught by guest code.
 *
 * @module
 */
import type { QuickJSContext, QuickJSHandle, QuickJSRuntime } from "quickjs-emscripten-core";
import {
  type CompiledCell,
  type Diagnostic,
  type ErrorObject,
  errorDiagnostic,
  errorObject,
  type JsonValue,
  type Language,
  OutputCapture,
  RESULT_ISSUE_SEPARATOR,
  RESULT_ISSUES_SEPARATOR,
  RunClock,
  type RunStatus,
  type RuntimeRunOutcome,
  type RuntimeRunRequest,
  resultNotJsonDiagnostic,
  runStatusForToolError,
  type SessionId,
  type SessionLimits,
  sessionResetDiagnostic,
  type ToolCallReply,
  validationOutcome,
} from "../../src/index.ts";
import { type EngineInstance, INITIAL_MEMORY_BYTES } from "./memory.ts";
import { firstUserSpan, mapStack } from "./stack.ts";

/** Shadow-stack bytes one simple JavaScript frame takes in this build (measured: 256 KiB held 1,362 frames). */
export const STACK_BYTES_PER_FRAME = 192;
/** Frames the prelude and the cell wrapper use beneath user code. */
const STACK_OVERHEAD_FRAMES = 24;
/** Largest QuickJS stack allowed: QuickJS's check must trip well before the thread's native stack. */
export const MAX_STACK_BYTES = 1_048_576;
/** Timers one run may have pending at once. */
const MAX_PENDING_TIMERS = 1_000;
/** Largest encoded result accepted from the guest, in UTF-16 units. */
const MAX_RESULT_CHARS = 16 * 1_048_576;
/** Time given, at a run's end, to promise jobs it left queued before the session is reset. */
const LEFTOVER_JOBS_BUDGET_MS = 50;

/** Shadow-stack bytes for a frame budget. */
export function stackBytes(maxStackDepth: number): number {
  return Math.min(MAX_STACK_BYTES, (maxStackDepth + STACK_OVERHEAD_FRAMES) * STACK_BYTES_PER_FRAME);
}

/** Internals the prelude returned, as handles. */
export interface Internals {
  beginRun: QuickJSHandle;
  syncTools: QuickJSHandle;
  encodeResult: QuickJSHandle;
  describeError: QuickJSHandle;
  settleCall: QuickJSHandle;
  fireTimer: QuickJSHandle;
  resetRun: QuickJSHandle;
  takeDroppedOutput: QuickJSHandle;
  self: QuickJSHandle;
}

/** A QuickJS session: its engine instance and what persists between runs. */
export interface Session {
  readonly id: SessionId;
  readonly language: Language;
  /** Limits the session was created with (a reset session gets them again). */
  readonly limits: SessionLimits;
  readonly instance: EngineInstance;
  readonly runtime: QuickJSRuntime;
  readonly context: QuickJSContext;
  readonly internals: Internals;
  toolsVersion: number;
  cellCount: number;
  /** Host timer ids are unique within the session, so a stale guest entry never matches. */
  nextTimerId: number;
  readonly cells: Map<string, CompiledCell>;
  activeRun: ActiveRun | null;
}

/** Why the engine stopped guest code. */
type StopReason = "memory" | "cpu" | "wall" | "cancelled" | "fatal";

/** `"run"` executes the cell; `"validate"` only compiles it and refuses every binding. */
export type RunMode = "run" | "validate";

interface DescribedError {
  name: string;
  message: string;
  stack: string;
  code?: string;
  status?: string;
}

/** See the module comment. */
export class ActiveRun {
  readonly #session: Session;
  readonly #request: RuntimeRunRequest;
  readonly #mode: RunMode;
  readonly #stdout: OutputCapture;
  readonly #stderr: OutputCapture;
  #wallDeadline: number;
  readonly #cpuLimitMs: number;
  readonly #pendingCalls = new Set<number>();
  readonly #settledCalls: [number, string][] = [];
  readonly #timers = new Map<number, NodeJS.Timeout>();
  readonly #firedTimers: number[] = [];
  readonly #onAbort: () => void;
  readonly #clock: RunClock;
  #callsStarted = 0;
  #timersArmed = 0;
  #cpuUsedMs = 0;
  #sliceWallStart = 0;
  #sliceCpuStart = 0;
  #stopReason: StopReason | null = null;
  #closed = false;
  #draining = false;
  /** Set while an internal that runs no guest code executes: nothing to interrupt. */
  #quiet = false;
  #wake: (() => void) | null = null;
  #wallTimer: NodeJS.Timeout | undefined;
  #pausedAt: number | null = null;
  /** The session was destroyed during the run; dispose it when the run ends. */
  disposeSessionAfter = false;
  /** Promise jobs the run left could not be drained: the session must be reset. */
  mustReset = false;

  constructor(session: Session, request: RuntimeRunRequest, mode: RunMode) {
    this.#session = session;
    this.#request = request;
    this.#mode = mode;
    this.#stdout = new OutputCapture(request.limits.max_stdout_bytes);
    this.#stderr = new OutputCapture(request.limits.max_stdout_bytes);
    this.#wallDeadline = performance.now() + request.limits.wall_ms;
    this.#cpuLimitMs = request.limits.cpu_ms;
    this.#onAbort = () => this.stop("cancelled");
    this.#clock = new RunClock(request.determinism);
    request.signal.addEventListener("abort", this.#onAbort, { once: true });
    if (request.signal.aborted) this.#stopReason = "cancelled";
    session.instance.memory.reset();
    session.instance.memory.capBytes = Math.max(
      request.limits.memory_mb * 1_048_576,
      INITIAL_MEMORY_BYTES,
    );
    session.runtime.setMaxStackSize(stackBytes(request.limits.max_stack_depth));
  }

  /** Checks that the engine itself compiles the cell (its parser has the last word); runs nothing. */
  validate(cell: CompiledCell): RuntimeRunOutcome {
    const context = this.#session.context;
    const compiled = this.#enter(() =>
      context.evalCode(cell.script, cell.filename, { compileOnly: true }),
    );
    if (compiled.error) {
      const described = this.#describe(compiled.error);
      compiled.error.dispose();
      if (this.#stopReason) return this.#stopped();
      return validationOutcome(
        errorObject("SYNTAX_ERROR", `${described.name}: ${described.message}`, {
          span: firstUserSpan(described.stack, cell),
        }),
      );
    }
    compiled.value.dispose();
    return this.#outcome("ok", null, null, false);
  }

  /** Runs the cell to its end. */
  async execute(cell: CompiledCell): Promise<RuntimeRunOutcome> {
    const { context, internals } = this.#session;
    this.#syncTools();
    const inputsJson = JSON.stringify(this.#request.inputs);
    const inputsError = this.#callInternal(
      internals.beginRun,
      this.#clock.seedText,
      true,
      inputsJson === "{}" ? "" : inputsJson,
    );
    if (inputsError !== null && inputsError !== "") {
      return validationOutcome(errorObject("INVALID_INPUT", inputsError));
    }
    if (this.#stopReason) return this.#stopped();

    this.#armWallTimer();
    const evaluated = this.#enter(() => context.evalCode(cell.script, cell.filename));
    if (evaluated.error) {
      this.#closed = true;
      const described = this.#describe(evaluated.error);
      evaluated.error.dispose();
      if (this.#stopReason || this.#checkLimits()) return this.#stopped();
      // The engine refused code acorn accepted: report it as the parser would.
      return validationOutcome(
        errorObject("SYNTAX_ERROR", `${described.name}: ${described.message}`, {
          span: firstUserSpan(described.stack, cell),
        }),
      );
    }
    const promise = evaluated.value;
    try {
      for (;;) {
        this.#drainJobs();
        if (this.#stopReason || this.#checkLimits()) return this.#stopped();
        const state = context.getPromiseState(promise);
        if (state.type === "fulfilled") {
          this.#closed = true;
          const outcome = this.#fulfilled(state.value, cell);
          state.value.dispose();
          return outcome;
        }
        if (state.type === "rejected") {
          this.#closed = true;
          const outcome = this.#rejected(state.error, cell);
          state.error.dispose();
          return outcome;
        }
        await this.#waitForHost();
        this.#settleCalls();
        this.#fireTimers();
      }
    } finally {
      promise.dispose();
    }
  }

  /** Outcome for a failure of the host while running (a trapped engine, a bug). */
  hostFailure(error: unknown): RuntimeRunOutcome {
    const isStackOverflow = error instanceof RangeError && /call stack/i.test(error.message);
    const failure = isStackOverflow
      ? errorObject(
          "STACK_LIMIT",
          "The run nested calls too deeply for the engine; the session was reset.",
        )
      : errorObject(
          "ENGINE_CRASHED",
          `The QuickJS engine failed (${error instanceof Error ? error.message : String(error)}); the session was reset.`,
        );
    return this.#outcome(
      isStackOverflow ? "resource_exhausted" : "interrupted",
      null,
      failure,
      true,
    );
  }

  /** Stops guest code at the next poll; the run ends with the reason's status. */
  stop(reason: StopReason): void {
    this.#stopReason ??= reason;
    this.#wake?.();
  }

  /** Pauses or resumes the wall clock (the run waits for a person's approval). */
  pauseClock(paused: boolean): void {
    if (paused && this.#pausedAt === null) {
      this.#pausedAt = performance.now();
      clearTimeout(this.#wallTimer);
    } else if (!paused && this.#pausedAt !== null) {
      this.#wallDeadline += performance.now() - this.#pausedAt;
      this.#pausedAt = null;
      if (!this.#closed) this.#armWallTimer();
    }
  }

  /** Called by QuickJS every few thousand bytecodes. */
  shouldInterrupt(): boolean {
    if (this.#quiet) return false;
    return this.#draining || this.#stopReason !== null || this.#checkLimits();
  }

  /**
   * Ends the run: closes every binding first, then forgets its timers and calls, and drains
   * promise jobs it left (they run closed, with every poll interrupting). Jobs that do not
   * drain within {@link LEFTOVER_JOBS_BUDGET_MS} set {@link mustReset}.
   */
  finish(): void {
    this.#closed = true;
    clearTimeout(this.#wallTimer);
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    this.#request.signal.removeEventListener("abort", this.#onAbort);
    const leftState =
      this.#timersArmed > 0 || this.#pendingCalls.size > 0 || this.#stopReason !== null;
    this.#pendingCalls.clear();
    this.#settledCalls.length = 0;
    if (this.disposeSessionAfter) return;
    try {
      // resetRun replaces two maps and runs no guest code; an interrupt must not cut it short.
      if (leftState) this.#callInternal(this.#session.internals.resetRun, undefined, false);
      this.#drainLeftoverJobs();
    } catch {
      this.mustReset = true;
    }
  }

  /**
   * Host binding: the clock guest code reads (see RunClock). Answers even once the run is
   * closed, so encoding a result that reads the clock replays the same.
   */
  now(): number {
    return this.#clock.now();
  }

  /**
   * Host binding: print. Dropped once the run is closed. Answers `false` once the stream has
   * dropped output: the prelude then only counts that stream's bytes (see
   * {@link GuestInternals.takeDroppedOutput}), so a flood past the cap crosses no more.
   */
  print(stream: 1 | 2, text: string): boolean {
    if (this.#closed || this.#mode === "validate") return true;
    const capture = stream === 2 ? this.#stderr : this.#stdout;
    const kept = capture.write(text);
    if (kept !== "" && this.#request.onOutput) {
      try {
        this.#request.onOutput(stream === 2 ? "stderr" : "stdout", kept);
      } catch {
        // A listener's failure must not reach the guest.
      }
    }
    return capture.droppedBytes === 0;
  }

  /**
   * Host binding: start tool call `id`. Refused (thrown into the guest) when the run is
   * closed or stopping, or past the call budget; the call that exceeds the budget goes to the
   * gateway, which records it as denied, and stops the run at once.
   */
  startToolCall(id: number, name: string, argsJson: string, kwargsJson: string): void {
    if (this.#closed || this.#mode === "validate")
      throw new Error("tool calls are not available now: the run has ended");
    if (this.#stopReason || this.#checkLimits()) throw new Error("the run is stopping");
    const budget = this.#request.limits.max_external_calls;
    this.#callsStarted += 1;
    if (this.#callsStarted > budget + 1) {
      throw new Error(`the run may make ${budget} tool calls (max_external_calls)`);
    }
    if (this.#callsStarted === budget + 1) this.stop("fatal");
    this.#pendingCalls.add(id);
    this.#request.tools.call(name, argsJson, kwargsJson).then(
      (reply) => this.#onReply(id, reply),
      (error: unknown) =>
        this.#onReply(id, {
          ok: false,
          status: "error",
          code: "TOOL_ERROR",
          message: `the tool bridge failed: ${error instanceof Error ? error.message : String(error)}`,
          fatal: false,
        }),
    );
  }

  /** Host binding: arm a timer; answers its id (unique in the session). */
  setTimer(delayMs: number): number {
    if (this.#closed || this.#mode === "validate")
      throw new Error("timers are not available now: the run has ended");
    if (this.#timers.size >= MAX_PENDING_TIMERS) {
      throw new RangeError(`at most ${MAX_PENDING_TIMERS} timers may be pending`);
    }
    const id = ++this.#session.nextTimerId;
    this.#timersArmed += 1;
    const delay = Number.isFinite(delayMs) ? Math.min(Math.max(0, delayMs), 2_147_483_647) : 0;
    this.#timers.set(
      id,
      setTimeout(() => {
        this.#timers.delete(id);
        this.#firedTimers.push(id);
        this.#wake?.();
      }, delay),
    );
    return id;
  }

  /** Host binding: disarm a timer. */
  clearTimer(id: number): void {
    clearTimeout(this.#timers.get(id));
    this.#timers.delete(id);
  }

  #onReply(id: number, reply: ToolCallReply): void {
    if (this.#closed || !this.#pendingCalls.delete(id)) return;
    if (!reply.ok && reply.fatal) this.stop("fatal");
    const text = reply.ok
      ? `{"ok":true,"value":${reply.valueJson}}`
      : JSON.stringify({
          ok: false,
          code: reply.code,
          message: reply.message,
          status: reply.status,
        });
    this.#settledCalls.push([id, text]);
    this.#wake?.();
  }

  #syncTools(): void {
    const tools = this.#request.tools;
    if (this.#session.toolsVersion === tools.version) return;
    this.#callInternal(this.#session.internals.syncTools, JSON.stringify(tools.names));
    this.#session.toolsVersion = tools.version;
  }

  /**
   * Calls a prelude internal; answers its string result, or null. With `interruptible` false
   * the interrupt handler stands down (only for internals that run no guest code).
   */
  #callInternal(
    fn: QuickJSHandle,
    first?: string | number,
    interruptible = true,
    second?: string,
  ): string | null {
    const context = this.#session.context;
    const toHandle = (value: string | number) =>
      typeof value === "string" ? context.newString(value) : context.newNumber(value);
    const args = [first, second]
      .filter((value) => value !== undefined)
      .map((value) => toHandle(value!));
    this.#quiet = !interruptible;
    try {
      const result = this.#enter(() => context.callFunction(fn, context.undefined, ...args));
      const value = result.error ?? result.value;
      const text =
        !result.error && context.typeof(value) === "string" ? context.getString(value) : null;
      value.dispose();
      return text;
    } finally {
      this.#quiet = false;
      for (const handle of args) handle.dispose();
    }
  }

  /**
   * Counts what the prelude held back past the cap (see {@link print}). When the engine cannot
   * answer (it ran out of memory), the streams still carry their truncation warning; only the
   * dropped byte count in it is short.
   */
  #takeDroppedOutput(): void {
    // The prelude holds output back only after the host said a stream dropped some.
    if (this.#stdout.droppedBytes === 0 && this.#stderr.droppedBytes === 0) return;
    try {
      const counts = this.#callInternal(
        this.#session.internals.takeDroppedOutput,
        undefined,
        false,
      );
      const [stdout, stderr] = (counts ?? "").split(",").map(Number);
      this.#stdout.drop(stdout ?? 0);
      this.#stderr.drop(stderr ?? 0);
    } catch {
      // The engine is broken; the run's outcome says so elsewhere.
    }
  }

  /** Runs engine code, counting its CPU time. */
  #enter<T>(body: () => T): T {
    this.#sliceWallStart = performance.now();
    this.#sliceCpuStart = threadCpuMs();
    try {
      return body();
    } finally {
      this.#cpuUsedMs += threadCpuMs() - this.#sliceCpuStart;
      this.#sliceWallStart = 0;
    }
  }

  #describe(error: QuickJSHandle): DescribedError {
    const text = this.#callDescribe(error);
    try {
      if (text !== null) return JSON.parse(text) as DescribedError;
    } catch {
      // fall through
    }
    return { name: "Error", message: "(an error that could not be described)", stack: "" };
  }

  #callDescribe(error: QuickJSHandle): string | null {
    const { context, internals } = this.#session;
    const result = this.#enter(() =>
      context.callFunction(internals.describeError, context.undefined, error),
    );
    const value = result.error ?? result.value;
    const text =
      !result.error && context.typeof(value) === "string" ? context.getString(value) : null;
    value.dispose();
    return text;
  }

  #drainJobs(): void {
    const runtime = this.#session.runtime;
    while (!this.#stopReason && runtime.hasPendingJob()) {
      const result = this.#enter(() => runtime.executePendingJobs(1_000));
      if (result.error) result.error.dispose();
      if (this.#checkLimits()) break;
    }
  }

  #drainLeftoverJobs(): void {
    const runtime = this.#session.runtime;
    if (!runtime.hasPendingJob()) return;
    this.#draining = true;
    const deadline = performance.now() + LEFTOVER_JOBS_BUDGET_MS;
    try {
      while (runtime.hasPendingJob()) {
        if (performance.now() > deadline) {
          this.mustReset = true;
          return;
        }
        const result = this.#enter(() => runtime.executePendingJobs(1_000));
        if (result.error) result.error.dispose();
      }
    } finally {
      this.#draining = false;
    }
  }

  #settleCalls(): void {
    while (this.#settledCalls.length > 0 && !this.#stopReason) {
      const [id, text] = this.#settledCalls.shift()!;
      this.#callInternal(this.#session.internals.settleCall, id, true, text);
      this.#drainJobs();
    }
  }

  #fireTimers(): void {
    while (this.#firedTimers.length > 0 && !this.#stopReason) {
      this.#callInternal(this.#session.internals.fireTimer, this.#firedTimers.shift()!);
      this.#drainJobs();
    }
  }

  /** Checks every limit; sets the stop reason and answers true when one is passed. */
  #checkLimits(): boolean {
    if (this.#stopReason) return true;
    if (this.#session.instance.memory.exhausted) {
      this.#stopReason = "memory";
      return true;
    }
    if (this.#request.cancelRequested?.()) {
      this.#stopReason = "cancelled";
      return true;
    }
    const now = performance.now();
    if (this.#pausedAt === null && now > this.#wallDeadline) {
      this.#stopReason = "wall";
      return true;
    }
    if (this.#sliceWallStart !== 0) {
      // CPU time in a slice never exceeds its wall time: read the (dearer) thread clock only
      // when the wall time alone could pass the limit.
      const upperBound = this.#cpuUsedMs + (now - this.#sliceWallStart);
      if (
        upperBound > this.#cpuLimitMs &&
        this.#cpuUsedMs + (threadCpuMs() - this.#sliceCpuStart) > this.#cpuLimitMs
      ) {
        this.#stopReason = "cpu";
        return true;
      }
    } else if (this.#cpuUsedMs > this.#cpuLimitMs) {
      this.#stopReason = "cpu";
      return true;
    }
    return false;
  }

  #armWallTimer(): void {
    const remaining = Math.max(0, this.#wallDeadline - performance.now());
    this.#wallTimer = setTimeout(() => this.stop("wall"), remaining + 1);
  }

  #waitForHost(): Promise<void> {
    if (this.#firedTimers.length > 0 || this.#settledCalls.length > 0 || this.#stopReason) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.#wake = () => {
        this.#wake = null;
        resolve();
      };
    });
  }

  #fulfilled(value: QuickJSHandle, cell: CompiledCell): RuntimeRunOutcome {
    const { context, internals } = this.#session;
    const encoded = this.#enter(() =>
      context.callFunction(internals.encodeResult, context.undefined, value),
    );
    if (this.#stopReason || this.#checkLimits()) {
      (encoded.error ?? encoded.value).dispose();
      return this.#stopped();
    }
    if (encoded.error) {
      const described = this.#describe(encoded.error);
      encoded.error.dispose();
      return this.#runtimeError(described, cell);
    }
    const text =
      context.typeof(encoded.value) === "string" ? context.getString(encoded.value) : "null";
    encoded.value.dispose();
    if (!cell.hasResult) return this.#outcome("ok", null, null, false);
    const diagnostics: Diagnostic[] = [];
    if (text.length > MAX_RESULT_CHARS) {
      diagnostics.push({
        severity: "warning",
        code: "RESULT_NOT_JSON",
        message: `The result is larger than ${MAX_RESULT_CHARS} characters of JSON and was dropped.`,
        hint: "Return a smaller value, or store large data with a tool.",
        span: null,
      });
      return this.#outcome("ok", null, null, false, diagnostics);
    }
    const separator = text.indexOf(RESULT_ISSUES_SEPARATOR);
    const json = separator >= 0 ? text.slice(0, separator) : text;
    let result: JsonValue | null;
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
    return this.#outcome("ok", result, null, false, diagnostics);
  }

  #rejected(error: QuickJSHandle, cell: CompiledCell): RuntimeRunOutcome {
    const described = this.#describe(error);
    if (this.#stopReason || this.#checkLimits()) return this.#stopped();
    return this.#runtimeError(described, cell);
  }

  #runtimeError(described: DescribedError, cell: CompiledCell): RuntimeRunOutcome {
    const stack = mapStack(described.stack, cell, this.#session.cells);
    const where = firstUserSpan(described.stack, cell);
    const headline = `${described.name}: ${described.message}`;
    this.#stderr.write(`${headline}\n${stack ? `${stack}\n` : ""}`);
    const engineStackOverflow =
      described.message === "stack overflow" &&
      (described.name === "InternalError" ||
        described.name === "SyntaxError" ||
        described.name === "RangeError");
    if (engineStackOverflow) {
      return this.#outcome(
        "resource_exhausted",
        null,
        errorObject(
          "STACK_LIMIT",
          `The run nested calls deeper than max_stack_depth (${this.#request.limits.max_stack_depth}) allows.`,
          { span: where, hint: "Recurse less deeply, or raise limits.max_stack_depth." },
        ),
        false,
      );
    }
    const toolCode = described.name === "ToolError" && described.code ? described.code : null;
    const status = toolCode ? runStatusForToolError(toolCode) : "runtime_error";
    return this.#outcome(
      status,
      null,
      errorObject(toolCode ?? "RUNTIME_ERROR", headline, { span: where }),
      false,
    );
  }

  #stopped(): RuntimeRunOutcome {
    const limits = this.#request.limits;
    switch (this.#stopReason) {
      case "memory":
        return this.#outcome(
          "resource_exhausted",
          null,
          errorObject(
            "MEMORY_LIMIT",
            `The run tried to use more than memory_mb (${limits.memory_mb} MiB); the session was reset.`,
            { hint: "Hold less data at once, or raise limits.memory_mb." },
          ),
          true,
        );
      case "cpu":
        return this.#outcome(
          "timeout",
          null,
          errorObject(
            "CPU_TIME_LIMIT",
            `The run used more than cpu_ms (${limits.cpu_ms} ms) of CPU time.`,
          ),
          false,
        );
      case "wall":
        return this.#outcome(
          "timeout",
          null,
          errorObject(
            "WALL_TIME_LIMIT",
            `The run took longer than wall_ms (${limits.wall_ms} ms).`,
          ),
          false,
        );
      case "cancelled":
        return this.#outcome(
          "cancelled",
          null,
          errorObject("RUN_CANCELLED", "The run was cancelled."),
          false,
        );
      default:
        return this.#outcome(
          "resource_exhausted",
          null,
          errorObject(
            "EXTERNAL_CALL_LIMIT",
            `The run made more than max_external_calls (${limits.max_external_calls}) tool calls.`,
          ),
          false,
        );
    }
  }

  #outcome(
    status: RunStatus,
    result: JsonValue | null,
    error: ErrorObject | null,
    sessionReset: boolean,
    extra: Diagnostic[] = [],
  ): RuntimeRunOutcome {
    if (!sessionReset) this.#takeDroppedOutput();
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
    if (sessionReset) diagnostics.push(sessionResetDiagnostic());
    return {
      status,
      result,
      stdout: this.#stdout.text,
      stderr: this.#stderr.text,
      diagnostics,
      error,
      memoryPeakBytes: this.#session.instance.memory.sizeBytes,
      instructions: 0,
      cpuMs: Math.round(this.#cpuUsedMs),
      sessionReset,
      clock: this.#clock.record,
    };
  }
}

function threadCpuMs(): number {
  const usage = process.threadCpuUsage();
  return (usage.user + usage.system) / 1000;
}
