/**
 * QuickJS sessions in the current thread: the engine the QuickJS backend runs inside each of
 * its worker threads (see ./index.ts), usable directly in-thread too (benchmarks, tests).
 *
 * One session = one WebAssembly instance (its own linear memory, see ./memory.ts), one
 * QuickJS runtime and context, the guest prelude, and the globals of every cell run so far.
 *
 * Limits, all checked by QuickJS's interrupt handler (polled every few thousand bytecodes),
 * at every host call, and when the run ends:
 * - memory_mb: the gated linear memory; an allocation past it ends the run, uncatchably.
 * - cpu_ms: the thread's CPU time while guest code executes (`process.threadCpuUsage`).
 * - wall_ms: wall time since the run started, tool calls included.
 * - max_stack_depth: QuickJS's stack-size check, sized from measured bytes per frame. The
 *   worker thread's native stack is large (see ./index.ts) so QuickJS's own check trips
 *   before V8's, for JavaScript and C-level (JSON, regexp) recursion alike.
 * - max_stdout_bytes: {@link OutputCapture}.
 *
 * @module
 */
import type {
  QuickJSContext,
  QuickJSDeferredPromise,
  QuickJSHandle,
  QuickJSRuntime,
} from "quickjs-emscripten-core";
import {
  type CompiledCell,
  compileCell,
  type Diagnostic,
  type ErrorObject,
  errorObject,
  GUEST_PRELUDE,
  type JsLanguage,
  type JsonValue,
  type Language,
  type LanguageRuntime,
  OutputCapture,
  RESULT_ISSUE_SEPARATOR,
  RESULT_ISSUES_SEPARATOR,
  type RunStatus,
  type RuntimeInfo,
  type RuntimeRunOutcome,
  type RuntimeRunRequest,
  SandboxError,
  type SessionId,
  type SessionLimits,
  type Span,
  span,
} from "../../src/index.ts";
import {
  type EngineBuild,
  type EngineInstance,
  INITIAL_MEMORY_BYTES,
  instantiateEngine,
} from "./memory.ts";

/** Shadow-stack bytes one simple JavaScript frame takes in this build (measured: 256 KiB held 1,362 frames). */
export const STACK_BYTES_PER_FRAME = 192;
/** Frames the prelude and the cell wrapper use beneath user code. */
const STACK_OVERHEAD_FRAMES = 24;
/** Largest QuickJS stack allowed: QuickJS's check must trip well before the thread's native stack. */
export const MAX_STACK_BYTES = 1_048_576;
/** Timers one run may have pending at once. */
const MAX_PENDING_TIMERS = 1_000;
/** Cells whose source maps a session keeps, to map stack frames of functions from older cells. */
const KEPT_CELLS = 64;
/** Largest encoded result accepted from the guest, in UTF-16 units. */
const MAX_RESULT_CHARS = 16 * 1_048_576;

/** Why the engine stopped guest code. */
type StopReason = "memory" | "cpu" | "wall" | "cancelled" | "fatal";

/** Options of {@link QuickJsEngine}. */
export interface QuickJsEngineOptions {
  build: EngineBuild;
  info: RuntimeInfo;
}

/** Internals the prelude returned, as handles. */
interface Internals {
  setInputs: QuickJSHandle;
  syncTools: QuickJSHandle;
  encodeResult: QuickJSHandle;
  describeError: QuickJSHandle;
  fireTimer: QuickJSHandle;
  clearTimers: QuickJSHandle;
  self: QuickJSHandle;
}

interface Session {
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
  readonly cells: Map<string, CompiledCell>;
  activeRun: ActiveRun | null;
}

/**
 * Sessions of one thread. Implements {@link LanguageRuntime} so it can serve in-thread;
 * the worker-thread backend wraps it.
 */
export class QuickJsEngine implements LanguageRuntime {
  readonly info: RuntimeInfo;
  readonly #build: EngineBuild;
  readonly #sessions = new Map<SessionId, Session>();

  constructor(options: QuickJsEngineOptions) {
    this.#build = options.build;
    this.info = options.info;
  }

  async createSession(
    sessionId: SessionId,
    limits: SessionLimits,
    language: Language,
  ): Promise<void> {
    if (this.#sessions.has(sessionId)) {
      throw new SandboxError("SESSION_EXISTS", `Session '${sessionId}' already exists.`);
    }
    const session = await this.#newSession(sessionId, limits, language);
    if (this.#sessions.has(sessionId)) {
      disposeSession(session);
      throw new SandboxError("SESSION_EXISTS", `Session '${sessionId}' already exists.`);
    }
    this.#sessions.set(sessionId, session);
  }

  async destroySession(sessionId: SessionId): Promise<boolean> {
    const session = this.#sessions.get(sessionId);
    if (!session) return false;
    this.#sessions.delete(sessionId);
    session.activeRun?.stop("cancelled");
    if (!session.activeRun) disposeSession(session);
    else session.activeRun.disposeSessionAfter = true;
    return true;
  }

  async listSessions(): Promise<SessionId[]> {
    return [...this.#sessions.keys()];
  }

  async snapshotSession(_sessionId: SessionId): Promise<Uint8Array> {
    throw new SandboxError("SNAPSHOT_NOT_SUPPORTED", "QuickJS sessions cannot be snapshotted yet.");
  }

  async restoreSession(_snapshot: Uint8Array, _sessionId?: SessionId): Promise<SessionId> {
    throw new SandboxError("SNAPSHOT_NOT_SUPPORTED", "QuickJS sessions cannot be restored yet.");
  }

  canRestoreSnapshot(_snapshot: Uint8Array): boolean {
    return false;
  }

  async close(): Promise<void> {
    for (const id of [...this.#sessions.keys()]) await this.destroySession(id);
  }

  /** Runs one cell. Guest failures resolve; an unknown session rejects with `SESSION_NOT_FOUND`. */
  async run(request: RuntimeRunRequest): Promise<RuntimeRunOutcome> {
    const session = this.#sessions.get(request.sessionId);
    if (!session) {
      throw new SandboxError("SESSION_NOT_FOUND", `No session '${request.sessionId}'.`);
    }
    if (session.activeRun) {
      throw new SandboxError("SESSION_BUSY", `Session '${request.sessionId}' is running.`);
    }
    const language = request.language === "python" ? null : (request.language as JsLanguage);
    if (!language) {
      return validationOutcome(
        errorObject(
          "LANGUAGE_MISMATCH",
          "This QuickJS session runs JavaScript and TypeScript only.",
        ),
      );
    }
    session.cellCount += 1;
    const filename = `cell-${session.cellCount}.js`;
    const compiled = compileCell(request.code, language, filename);
    if (!compiled.ok) return validationOutcome(compiled.error);
    const cell = compiled.cell;

    const run = new ActiveRun(session, request);
    session.activeRun = run;
    let outcome: RuntimeRunOutcome;
    try {
      outcome = request.validateOnly ? run.validate(cell) : await run.execute(cell);
    } catch (error) {
      outcome = run.hostFailure(error);
    } finally {
      run.finish();
      session.activeRun = null;
    }
    if (!request.validateOnly) rememberCell(session, cell);
    if (run.disposeSessionAfter) {
      disposeSession(session);
    } else if (outcome.sessionReset) {
      await this.#reset(session);
    }
    return outcome;
  }

  /** Replaces a session's engine instance with a fresh, empty one (same id and limits). */
  async #reset(session: Session): Promise<void> {
    disposeSession(session);
    if (this.#sessions.get(session.id) !== session) return;
    this.#sessions.delete(session.id);
    try {
      this.#sessions.set(
        session.id,
        await this.#newSession(session.id, session.limits, session.language),
      );
    } catch {
      // The session is gone; its next run answers SESSION_NOT_FOUND.
    }
  }

  async #newSession(
    sessionId: SessionId,
    limits: SessionLimits,
    language: Language,
  ): Promise<Session> {
    const capBytes = limits.memory_mb * 1_048_576;
    const instance = await instantiateEngine(this.#build, Math.max(capBytes, INITIAL_MEMORY_BYTES));
    const runtime = instance.module.newRuntime();
    runtime.setMaxStackSize(stackBytes(limits.max_stack_depth));
    const context = runtime.newContext();
    const holder: { session: Session | null } = { session: null };
    const internals = installPrelude(context, holder);
    const session: Session = {
      id: sessionId,
      language,
      limits,
      instance,
      runtime,
      context,
      internals,
      toolsVersion: -1,
      cellCount: 0,
      cells: new Map(),
      activeRun: null,
    };
    holder.session = session;
    runtime.setInterruptHandler(() => session.activeRun?.shouldInterrupt() ?? false);
    if (capBytes < INITIAL_MEMORY_BYTES && instance.malloc) {
      // Below the initial 16 MiB, reserve the difference so the guest gets memory_mb in all.
      const reserved = instance.malloc(INITIAL_MEMORY_BYTES - capBytes);
      if (reserved === 0) {
        disposeSession(session);
        throw new SandboxError(
          "LIMIT_EXCEEDS_CEILING",
          `memory_mb ${limits.memory_mb} is below what the QuickJS engine itself needs.`,
        );
      }
    }
    instance.memory.capBytes = Math.max(capBytes, INITIAL_MEMORY_BYTES);
    return session;
  }
}

/** Shadow-stack bytes for a frame budget. */
export function stackBytes(maxStackDepth: number): number {
  return Math.min(MAX_STACK_BYTES, (maxStackDepth + STACK_OVERHEAD_FRAMES) * STACK_BYTES_PER_FRAME);
}

function rememberCell(session: Session, cell: CompiledCell): void {
  session.cells.set(cell.filename, cell);
  if (session.cells.size > KEPT_CELLS) {
    const oldest = session.cells.keys().next().value;
    if (oldest !== undefined) session.cells.delete(oldest);
  }
}

function disposeSession(session: Session): void {
  try {
    for (const handle of Object.values(session.internals)) handle.dispose();
    session.context.dispose();
    session.runtime.dispose();
  } catch {
    // An engine that trapped may not dispose cleanly; dropping the instance frees it all.
  }
}

function emptyOutcome(status: RunStatus): RuntimeRunOutcome {
  return {
    status,
    result: null,
    stdout: "",
    stderr: "",
    diagnostics: [],
    error: null,
    memoryPeakBytes: 0,
    instructions: 0,
    cpuMs: 0,
    sessionReset: false,
  };
}

function validationOutcome(error: ErrorObject): RuntimeRunOutcome {
  return {
    ...emptyOutcome("validation_error"),
    error,
    diagnostics: [diagnosticOf(error)],
  };
}

function diagnosticOf(error: ErrorObject, severity: Diagnostic["severity"] = "error"): Diagnostic {
  return { severity, code: error.code, message: error.message, hint: error.hint, span: error.span };
}

/**
 * Evaluates the prelude and wires its host bindings to whichever run is active in the session.
 */
function installPrelude(context: QuickJSContext, holder: { session: Session | null }): Internals {
  const activeRun = (): ActiveRun => {
    const run = holder.session?.activeRun;
    if (!run) throw new Error("no run is active");
    return run;
  };
  const host = context.newObject();
  const print = context.newFunction("print", (streamHandle, textHandle) => {
    const stream = context.getNumber(streamHandle);
    let text = context.getString(textHandle);
    if (stream >= 3) {
      try {
        text = String(JSON.parse(text));
      } catch {
        return;
      }
    }
    activeRun().print(stream === 2 || stream === 4 ? 2 : 1, text);
  });
  const call = context.newFunction("call", (name, args, kwargs) =>
    activeRun().startToolCall(
      context.getString(name),
      context.getString(args),
      context.getString(kwargs),
    ),
  );
  const setTimer = context.newFunction("setTimer", (delay) =>
    context.newNumber(activeRun().setTimer(context.getNumber(delay))),
  );
  const clearTimer = context.newFunction("clearTimer", (id) => {
    activeRun().clearTimer(context.getNumber(id));
  });
  for (const [name, fn] of [
    ["print", print],
    ["call", call],
    ["setTimer", setTimer],
    ["clearTimer", clearTimer],
  ] as const) {
    context.setProp(host, name, fn);
    fn.dispose();
  }
  const factory = context.unwrapResult(context.evalCode(GUEST_PRELUDE, "prelude.js"));
  const self = context.unwrapResult(context.callFunction(factory, context.undefined, host));
  factory.dispose();
  host.dispose();
  const get = (name: string) => context.getProp(self, name);
  return {
    setInputs: get("setInputs"),
    syncTools: get("syncTools"),
    encodeResult: get("encodeResult"),
    describeError: get("describeError"),
    fireTimer: get("fireTimer"),
    clearTimers: get("clearTimers"),
    self,
  };
}

interface DescribedError {
  name: string;
  message: string;
  stack: string;
  code?: string;
  status?: string;
}

function describeHandle(
  session: Session,
  error: QuickJSHandle,
  enter: <T>(body: () => T) => T,
): DescribedError {
  const { context, internals } = session;
  const described = enter(() =>
    context.callFunction(internals.describeError, context.undefined, error),
  );
  if (described.error) {
    described.error.dispose();
    return { name: "Error", message: "(an error that could not be described)", stack: "" };
  }
  const text = context.getString(described.value);
  described.value.dispose();
  try {
    return JSON.parse(text) as DescribedError;
  } catch {
    return { name: "Error", message: "(an error that could not be described)", stack: "" };
  }
}

const FRAME = /^(\s*at\s+)(.*?)\s*\(?([^\s()]+):(\d+):(\d+)\)?\s*$/;

/**
 * Rewrites stack frames to the user's lines, drops frames of the prelude and of the cell
 * wrapper, and folds runs of identical frames (deep recursion); answers the text.
 */
function mapStack(stack: string, cell: CompiledCell, cells: Map<string, CompiledCell>): string {
  const frames: string[] = [];
  for (const line of stack.split("\n")) {
    if (line.trim() === "") continue;
    const match = FRAME.exec(line);
    if (!match) {
      frames.push(line);
      continue;
    }
    const [, prefix = "    at ", name = "", file = "", lineText = "0", columnText = "0"] = match;
    if (file === "prelude.js" || name === "<eval>") continue;
    const owner = file === cell.filename ? cell : cells.get(file);
    const position = owner?.originalPosition(Number(lineText), Number(columnText), "codepoint");
    const where = position ? `${file}:${position.line}:${position.column}` : `${file}`;
    const label = name === "" ? "" : `${name === "<anonymous>" ? "<cell>" : name} `;
    frames.push(`${prefix}${label}(${where})`);
  }
  const folded: string[] = [];
  for (let i = 0; i < frames.length; ) {
    let j = i + 1;
    while (j < frames.length && frames[j] === frames[i]) j++;
    folded.push(frames[i]!);
    if (j - i > 2) folded.push(`    ... the frame above ${j - i - 1} more times`);
    else if (j - i === 2) folded.push(frames[i]!);
    i = j;
  }
  return folded.join("\n");
}

/** Span of the innermost frame in the current cell, in the user's source. */
function firstUserSpan(
  stack: string,
  cell: CompiledCell,
  _cells: Map<string, CompiledCell>,
): Span | null {
  for (const line of stack.split("\n")) {
    const match = FRAME.exec(line);
    if (!match || match[3] !== cell.filename) continue;
    const position = cell.originalPosition(Number(match[4]), Number(match[5]), "codepoint");
    if (position) return span(position.line, position.column);
  }
  return null;
}

/** One run in progress: its limits, output, tool calls, timers and stop state. */
class ActiveRun {
  readonly #session: Session;
  readonly #request: RuntimeRunRequest;
  readonly #stdout: OutputCapture;
  readonly #stderr: OutputCapture;
  readonly #wallDeadline: number;
  readonly #cpuLimitMs: number;
  readonly #pendingCalls = new Set<QuickJSDeferredPromise>();
  readonly #timers = new Map<number, NodeJS.Timeout>();
  readonly #firedTimers: number[] = [];
  #nextTimer = 0;
  #cpuUsedMs = 0;
  #sliceWallStart = 0;
  #sliceCpuStart = 0;
  #stopReason: StopReason | null = null;
  #wake: (() => void) | null = null;
  #wallTimer: NodeJS.Timeout | undefined;
  #onAbort: () => void;
  disposeSessionAfter = false;

  constructor(session: Session, request: RuntimeRunRequest) {
    this.#session = session;
    this.#request = request;
    this.#stdout = new OutputCapture(request.limits.max_stdout_bytes);
    this.#stderr = new OutputCapture(request.limits.max_stdout_bytes);
    this.#wallDeadline = performance.now() + request.limits.wall_ms;
    this.#cpuLimitMs = request.limits.cpu_ms;
    this.#onAbort = () => this.stop("cancelled");
    request.signal.addEventListener("abort", this.#onAbort, { once: true });
    if (request.signal.aborted) this.#stopReason = "cancelled";
    session.instance.memory.reset();
    session.instance.memory.capBytes = Math.max(
      request.limits.memory_mb * 1_048_576,
      INITIAL_MEMORY_BYTES,
    );
    session.runtime.setMaxStackSize(stackBytes(request.limits.max_stack_depth));
  }

  readonly #enterBound = <T>(body: () => T): T => this.#enter(body);

  /** Checks that the engine itself compiles the cell (its parser has the last word); runs nothing. */
  validate(cell: CompiledCell): RuntimeRunOutcome {
    const context = this.#session.context;
    const compiled = this.#enter(() =>
      context.evalCode(cell.script, cell.filename, { compileOnly: true }),
    );
    if (compiled.error) {
      const described = describeHandle(this.#session, compiled.error, this.#enterBound);
      compiled.error.dispose();
      if (this.#stopReason) return this.#stopped(cell);
      return validationOutcome(
        errorObject("SYNTAX_ERROR", `${described.name}: ${described.message}`, {
          span: firstUserSpan(described.stack, cell, this.#session.cells),
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
    const inputsError = this.#callInternal(
      internals.setInputs,
      JSON.stringify(this.#request.inputs),
    );
    if (inputsError !== null && inputsError !== "") {
      return validationOutcome(errorObject("INVALID_INPUT", inputsError));
    }
    if (this.#stopReason) return this.#stopped(cell);

    this.#armWallTimer();
    const evaluated = this.#enter(() => context.evalCode(cell.script, cell.filename));
    if (evaluated.error) {
      const described = describeHandle(this.#session, evaluated.error, this.#enterBound);
      evaluated.error.dispose();
      if (this.#stopReason || this.#checkLimits()) return this.#stopped(cell);
      // The engine refused code acorn accepted: report it as the parser would.
      return validationOutcome(
        errorObject("SYNTAX_ERROR", `${described.name}: ${described.message}`, {
          span: firstUserSpan(described.stack, cell, this.#session.cells),
        }),
      );
    }
    const promise = evaluated.value;
    try {
      for (;;) {
        this.#drainJobs();
        if (this.#stopReason || this.#checkLimits()) return this.#stopped(cell);
        const state = context.getPromiseState(promise);
        if (state.type === "fulfilled") {
          const outcome = this.#fulfilled(state.value, cell);
          state.value.dispose();
          return outcome;
        }
        if (state.type === "rejected") {
          const outcome = this.#rejected(state.error, cell);
          state.error.dispose();
          return outcome;
        }
        await this.#waitForHost();
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

  /** Called by QuickJS every few thousand bytecodes. */
  shouldInterrupt(): boolean {
    return this.#stopReason !== null || this.#checkLimits();
  }

  /** Releases timers, pending calls and listeners. */
  finish(): void {
    clearTimeout(this.#wallTimer);
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    this.#request.signal.removeEventListener("abort", this.#onAbort);
    for (const deferred of this.#pendingCalls) {
      if (deferred.alive) deferred.dispose();
    }
    this.#pendingCalls.clear();
    if (!this.disposeSessionAfter) {
      try {
        this.#callInternal(this.#session.internals.clearTimers);
      } catch {
        // An engine that trapped may not answer; it is being reset.
      }
    }
  }

  print(stream: 1 | 2, text: string): void {
    (stream === 2 ? this.#stderr : this.#stdout).write(text);
  }

  startToolCall(name: string, argsJson: string, kwargsJson: string): QuickJSHandle {
    const context = this.#session.context;
    if (this.#stopReason || this.#checkLimits()) {
      throw new Error("the run is stopping");
    }
    const deferred = context.newPromise();
    this.#pendingCalls.add(deferred);
    this.#request.tools.call(name, argsJson, kwargsJson).then((reply) => {
      if (!deferred.alive) return;
      this.#pendingCalls.delete(deferred);
      if (!reply.ok && reply.fatal) this.stop("fatal");
      const text = reply.ok
        ? `{"ok":true,"value":${reply.valueJson}}`
        : JSON.stringify({
            ok: false,
            code: reply.code,
            message: reply.message,
            status: reply.status,
          });
      const value = context.newString(text);
      deferred.resolve(value);
      value.dispose();
      deferred.dispose();
      this.#wake?.();
    });
    return deferred.handle;
  }

  setTimer(delayMs: number): number {
    if (this.#timers.size >= MAX_PENDING_TIMERS) {
      throw new RangeError(`at most ${MAX_PENDING_TIMERS} timers may be pending`);
    }
    const id = ++this.#nextTimer;
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

  clearTimer(id: number): void {
    clearTimeout(this.#timers.get(id));
    this.#timers.delete(id);
  }

  #syncTools(): void {
    const tools = this.#request.tools;
    if (this.#session.toolsVersion === tools.version) return;
    this.#callInternal(this.#session.internals.syncTools, JSON.stringify(tools.names));
    this.#session.toolsVersion = tools.version;
  }

  /** Calls a prelude internal with limits on; answers its string result, or null. */
  #callInternal(fn: QuickJSHandle, argument?: string | number): string | null {
    const context = this.#session.context;
    const handle =
      argument === undefined
        ? context.undefined
        : typeof argument === "string"
          ? context.newString(argument)
          : context.newNumber(argument);
    try {
      const result = this.#enter(() => context.callFunction(fn, context.undefined, handle));
      const value = result.error ?? result.value;
      const text =
        !result.error && context.typeof(value) === "string" ? context.getString(value) : null;
      value.dispose();
      return text;
    } finally {
      handle.dispose();
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

  #drainJobs(): void {
    const runtime = this.#session.runtime;
    while (!this.#stopReason && runtime.hasPendingJob()) {
      const result = this.#enter(() => runtime.executePendingJobs(1_000));
      if (result.error) result.error.dispose();
      if (this.#checkLimits()) break;
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
    if (now > this.#wallDeadline) {
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
    if (this.#firedTimers.length > 0 || this.#stopReason) return Promise.resolve();
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
      return this.#stopped(cell);
    }
    if (encoded.error) {
      const described = describeHandle(this.#session, encoded.error, this.#enterBound);
      encoded.error.dispose();
      return this.#runtimeError(described, cell);
    }
    const text =
      context.typeof(encoded.value) === "string" ? context.getString(encoded.value) : "null";
    encoded.value.dispose();
    const diagnostics: Diagnostic[] = [];
    let result: JsonValue | null = null;
    if (!cell.hasResult) return this.#outcome("ok", null, null, false, diagnostics);
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
    try {
      result = JSON.parse(json) as JsonValue;
    } catch {
      result = json;
      diagnostics.push(resultDiagnostic(["output the engine could not encode"]));
    }
    if (separator >= 0) {
      diagnostics.push(resultDiagnostic(text.slice(separator + 1).split(RESULT_ISSUE_SEPARATOR)));
    }
    return this.#outcome("ok", result, null, false, diagnostics);
  }

  #rejected(error: QuickJSHandle, cell: CompiledCell): RuntimeRunOutcome {
    const described = describeHandle(this.#session, error, this.#enterBound);
    if (this.#stopReason || this.#checkLimits()) return this.#stopped(cell);
    return this.#runtimeError(described, cell);
  }

  #runtimeError(described: DescribedError, cell: CompiledCell): RuntimeRunOutcome {
    const stack = mapStack(described.stack, cell, this.#session.cells);
    const where = firstUserSpan(described.stack, cell, this.#session.cells);
    const headline = `${described.name}: ${described.message}`;
    this.#stderr.write(`${headline}\n${stack ? `${stack}\n` : ""}`);
    if (
      described.message === "stack overflow" &&
      (described.name === "InternalError" ||
        described.name === "SyntaxError" ||
        described.name === "RangeError")
    ) {
      return this.#outcome(
        "resource_exhausted",
        null,
        errorObject(
          "STACK_LIMIT",
          `The run nested calls deeper than max_stack_depth (${this.#request.limits.max_stack_depth}) allows.`,
          {
            span: where,
            hint: "Recurse less deeply, or raise limits.max_stack_depth.",
          },
        ),
        false,
      );
    }
    const code =
      described.name === "ToolError" && described.code ? described.code : "RUNTIME_ERROR";
    return this.#outcome(
      "runtime_error",
      null,
      errorObject(code, headline, { span: where }),
      false,
    );
  }

  #stopped(_cell: CompiledCell): RuntimeRunOutcome {
    const limits = this.#request.limits;
    switch (this.#stopReason) {
      case "memory":
        return this.#outcome(
          "resource_exhausted",
          null,
          errorObject(
            "MEMORY_LIMIT",
            `The run tried to use more than memory_mb (${limits.memory_mb} MiB); the session was reset.`,
            {
              hint: "Hold less data at once, or raise limits.memory_mb.",
            },
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
    const diagnostics: Diagnostic[] = [];
    if (error) diagnostics.push(diagnosticOf(error));
    diagnostics.push(...extra);
    for (const [capture, stream] of [
      [this.#stdout, "stdout"],
      [this.#stderr, "stderr"],
    ] as const) {
      const truncated = capture.truncationDiagnostic(stream);
      if (truncated) diagnostics.push(truncated);
    }
    if (sessionReset) {
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
      memoryPeakBytes: this.#session.instance.memory.sizeBytes,
      instructions: 0,
      cpuMs: Math.round(this.#cpuUsedMs),
      sessionReset,
    };
  }
}

function resultDiagnostic(issues: string[]): Diagnostic {
  return {
    severity: "warning",
    code: "RESULT_NOT_JSON",
    message: `The result held what JSON cannot (${issues.join("; ")}); those parts are given as strings or arrays.`,
    hint: null,
    span: null,
  };
}

function threadCpuMs(): number {
  const usage = process.threadCpuUsage();
  return (usage.user + usage.system) / 1000;
}
