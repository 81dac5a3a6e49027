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
import type { QuickJSContext, QuickJSRuntime } from "quickjs-emscripten-core";
import {
  type CompiledCell,
  canRestoreWith,
  compileCell,
  errorObject,
  GUEST_PRELUDE,
  type JsLanguage,
  type Language,
  type LanguageRuntime,
  type RuntimeInfo,
  type RuntimeRunOutcome,
  type RuntimeRunRequest,
  SandboxError,
  type SessionId,
  type SessionLimits,
  sessionResetDiagnostic,
  validationOutcome,
  WEB_GLOBALS_SOURCE,
} from "../../src/index.ts";
import {
  type EngineBuild,
  type EngineInstance,
  INITIAL_MEMORY_BYTES,
  instantiateEngine,
} from "./memory.ts";
import { ActiveRun, type Internals, type Session, stackBytes } from "./run.ts";

export { MAX_STACK_BYTES, STACK_BYTES_PER_FRAME, stackBytes } from "./run.ts";

/** Cells whose source maps a session keeps, to map stack frames of functions from older cells. */
const KEPT_CELLS = 64;

/** Options of {@link QuickJsEngine}. */
export interface QuickJsEngineOptions {
  build: EngineBuild;
  info: RuntimeInfo;
  /** Prepared instances kept ready for new sessions (default 2; 0 prepares on demand). */
  spareSessions?: number;
}

/** An engine instance with its context and prelude, not yet a session. */
interface PreparedInstance {
  instance: EngineInstance;
  runtime: QuickJSRuntime;
  context: QuickJSContext;
  internals: Internals;
  holder: { session: Session | null };
}

async function prepareInstance(build: EngineBuild): Promise<PreparedInstance> {
  const instance = await instantiateEngine(build, INITIAL_MEMORY_BYTES);
  const runtime = instance.module.newRuntime();
  runtime.setMaxStackSize(stackBytes(256));
  const context = runtime.newContext();
  const holder: { session: Session | null } = { session: null };
  const internals = installPrelude(context, holder);
  return { instance, runtime, context, internals, holder };
}

/**
 * Sessions of one thread. Implements {@link LanguageRuntime} so it can serve in-thread;
 * the worker-thread backend wraps it.
 */
export class QuickJsEngine implements LanguageRuntime {
  readonly info: RuntimeInfo;
  readonly #build: EngineBuild;
  readonly #sessions = new Map<SessionId, Session>();
  readonly #spares: PreparedInstance[] = [];
  readonly #runs = new Map<string, ActiveRun>();
  readonly #spareTarget: number;
  #refilling = false;
  #closed = false;

  constructor(options: QuickJsEngineOptions) {
    this.#build = options.build;
    this.info = options.info;
    this.#spareTarget = Math.max(0, options.spareSessions ?? 2);
    this.#refillSpares();
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
    throw new SandboxError(
      "SNAPSHOT_NOT_SUPPORTED",
      "QuickJS makes no image of a session; its snapshots are journals (docs/snapshots.md).",
    );
  }

  async restoreSession(_snapshot: Uint8Array, _sessionId?: SessionId): Promise<SessionId> {
    throw new SandboxError(
      "SNAPSHOT_NOT_SUPPORTED",
      "QuickJS restores no image; the session manager replays a snapshot's journal instead.",
    );
  }

  canRestoreSnapshot(snapshot: Uint8Array): boolean {
    return canRestoreWith(this.info, snapshot);
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const id of [...this.#sessions.keys()]) await this.destroySession(id);
    for (const spare of this.#spares.splice(0)) {
      try {
        for (const handle of Object.values(spare.internals)) handle.dispose();
        spare.context.dispose();
        spare.runtime.dispose();
      } catch {
        // Dropping the instance frees it all.
      }
    }
  }

  pauseClock(runId: string, paused: boolean): void {
    this.#runs.get(runId)?.pauseClock(paused);
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

    const run = new ActiveRun(session, request, request.validateOnly ? "validate" : "run");
    session.activeRun = run;
    this.#runs.set(request.runId, run);
    let outcome: RuntimeRunOutcome;
    try {
      outcome = request.validateOnly ? run.validate(cell) : await run.execute(cell);
    } catch (error) {
      outcome = run.hostFailure(error);
    } finally {
      run.finish();
      session.activeRun = null;
      this.#runs.delete(request.runId);
    }
    if (!request.validateOnly) rememberCell(session, cell);
    if (run.mustReset && !outcome.sessionReset) {
      // The run left promise jobs that would not drain: they must not run in a later run.
      outcome = {
        ...outcome,
        sessionReset: true,
        diagnostics: [...outcome.diagnostics, sessionResetDiagnostic()],
      };
    }
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
    const prepared = this.#spares.pop() ?? (await prepareInstance(this.#build));
    this.#refillSpares();
    const { instance, runtime, context, internals, holder } = prepared;
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
      nextTimerId: 0,
      cells: new Map(),
      activeRun: null,
    };
    holder.session = session;
    runtime.setMaxStackSize(stackBytes(limits.max_stack_depth));
    runtime.setInterruptHandler(() => session.activeRun?.shouldInterrupt() ?? false);
    const capBytes = limits.memory_mb * 1_048_576;
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

  /**
   * Keeps `spareSessions` prepared instances (engine, context and prelude, no id yet) so that
   * creating a session skips the ~2 ms of instantiation and prelude compilation. Refills one
   * at a time on an idle turn of the event loop.
   */
  #refillSpares(): void {
    if (this.#refilling || this.#closed || this.#spares.length >= this.#spareTarget) return;
    this.#refilling = true;
    setImmediate(async () => {
      try {
        while (!this.#closed && this.#spares.length < this.#spareTarget) {
          this.#spares.push(await prepareInstance(this.#build));
        }
      } catch {
        // Preparing failed (e.g. the process is short of memory); sessions will be prepared on demand.
      } finally {
        this.#refilling = false;
      }
    });
  }
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

/**
 * Evaluates the prelude and wires its host bindings to whichever run is active in the session.
 */
/**
 * Evaluates the prelude and wires its host bindings to whichever run is active in the
 * session. A binding used with no run active throws into the guest; the run itself refuses
 * what a closed run may not do (see ./run.ts).
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
    const open = holder.session?.activeRun?.print(stream === 2 || stream === 4 ? 2 : 1, text);
    return open === false ? context.newNumber(0) : undefined;
  });
  const call = context.newFunction("call", (id, name, args, kwargs) => {
    activeRun().startToolCall(
      context.getNumber(id),
      context.getString(name),
      context.getString(args),
      context.getString(kwargs),
    );
  });
  const setTimer = context.newFunction("setTimer", (delay) =>
    context.newNumber(activeRun().setTimer(context.getNumber(delay))),
  );
  const clearTimer = context.newFunction("clearTimer", (id) => {
    holder.session?.activeRun?.clearTimer(context.getNumber(id));
  });
  const now = context.newFunction("now", () =>
    context.newNumber(holder.session?.activeRun?.now() ?? Date.now()),
  );
  const webSource = context.newFunction("webSource", () => context.newString(WEB_GLOBALS_SOURCE));
  for (const [name, fn] of [
    ["print", print],
    ["call", call],
    ["setTimer", setTimer],
    ["clearTimer", clearTimer],
    ["now", now],
    ["webSource", webSource],
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
    beginRun: get("beginRun"),
    syncTools: get("syncTools"),
    encodeResult: get("encodeResult"),
    describeError: get("describeError"),
    settleCall: get("settleCall"),
    fireTimer: get("fireTimer"),
    resetRun: get("resetRun"),
    takeDroppedOutput: get("takeDroppedOutput"),
    self,
  };
}
