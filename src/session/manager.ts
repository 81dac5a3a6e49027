/**
 * The session manager: sessions and their runs, between the HTTP API and the backends.
 *
 * - Sessions are created explicitly or by their first run, on the backend configured for
 *   their language (or the one asked for). State lives in the backend between runs.
 * - Each session runs one run at a time; others wait in a FIFO queue of at most
 *   `maxQueuedRuns` (past it: `SESSION_BUSY`).
 * - Limits: a session's limits are the server defaults overlaid with what its creator asked
 *   for; a run may ask for different limits (and `timeout_ms` for wall_ms). Anything above a
 *   ceiling is `LIMIT_EXCEEDS_CEILING`.
 * - Sessions idle longer than `sessionIdleTtlMs` are destroyed; at most `maxSessions` exist.
 * - Runs can be cancelled by id, while queued or running; finished runs are remembered for
 *   `runRetentionMs` so their result can be fetched again.
 *
 * Guest failures are RunResults. What the caller got wrong about the run itself (a bad
 * session id, a limit above its ceiling, a language the session cannot run) is a RunResult
 * with status `validation_error` too, as in seed 004. Only capacity problems (`SESSION_BUSY`,
 * `SESSION_LIMIT_REACHED`) and shutdown (`SERVICE_CLOSING`) are thrown.
 *
 * @module
 */
import { randomUUID } from "node:crypto";
import { assertRunId, assertSessionId } from "../contract/ids.ts";
import {
  type Diagnostic,
  type ErrorObject,
  type JsonObject,
  type Language,
  type RunRequest,
  type RunResult,
  type RunStatus,
  type SessionId,
  type SessionLimits,
  type SessionMeta,
  SIDE_EFFECTS,
  type SideEffect,
  SNAPSHOT_VERSION,
} from "../contract/types.ts";
import { errorObject, isSandboxError, SandboxError } from "../errors.ts";
import { declaredGlobals } from "../js/cell.ts";
import { typecheckCell, typeOfJson } from "../js/typecheck.ts";
import type { LanguageRuntime, RuntimeRunOutcome } from "../runtime/interface.ts";
import type { RuntimeRegistry } from "../runtime/registry.ts";
import { type Approval, ApprovalQueue } from "../tools/approvals.ts";
import { ToolGateway } from "../tools/gateway.ts";
import type { ToolRegistry } from "../tools/registry.ts";
import { StubCache } from "../tools/stubs.ts";
import { WorkspaceRegistry } from "../workspace.ts";
import { assertWithinCeilings, mergeLimits } from "./limits.ts";

/** Options of {@link SessionManager}. Times in ms. */
export interface SessionManagerOptions {
  runtimes: RuntimeRegistry;
  tools: ToolRegistry;
  /** The sessions' file workspaces; a destroyed session's is dropped (default: a new registry). */
  workspaces?: WorkspaceRegistry;
  /** Called with a session's id after it is destroyed or expires (tool packs free its state). */
  onSessionDestroyed?: (sessionId: string) => void;
  /** Limits of a new session before its creator's requests (seed defaults unless configured). */
  defaults: SessionLimits;
  /** Highest value each limit may be asked for. */
  ceilings: SessionLimits;
  /** Most sessions at once (default 500). */
  maxSessions?: number;
  /** Idle time after which a session is destroyed (default 15 min). */
  sessionIdleTtlMs?: number;
  /** Runs that may wait behind a session's current run (default 8). */
  maxQueuedRuns?: number;
  /** How long a finished run's result can be fetched again (default 10 min). */
  runRetentionMs?: number;
  /** Most finished runs remembered at once; the oldest are forgotten first (default 10,000). */
  maxRetainedRuns?: number;
  /** Language of a session when neither the request nor an existing session says (seed: python). */
  defaultLanguage?: Language;
  /** Side-effect classes any session may use (default: all). A session may narrow them. */
  allowedSideEffects?: readonly SideEffect[];
  /** Time a tool call waits for a person's approval before it is denied (default 10 min). */
  approvalTtlMs?: number;
}

/** What `POST /v1/sessions` takes. */
export interface CreateSessionInput {
  session_id?: string;
  language?: Language;
  limits?: Partial<SessionLimits> | null;
  runtime?: string;
  /** Side-effect classes the session's code may use (narrowed by the server's); default: the server's. */
  allowed_side_effects?: SideEffect[] | null;
}

/** A session as the API shows it: seed 004's `SessionMeta` plus extensions. */
export interface SessionInfo extends SessionMeta {
  runtime: string;
  state: "idle" | "running";
  queued_runs: number;
  run_count: number;
  /** Unix epoch ms at which the session expires if it stays idle. */
  expires_at: number;
  /** Side-effect classes the session's code may use. */
  allowed_side_effects: SideEffect[];
}

/** A run as `GET /v1/runs/{id}` shows it. */
export interface RunInfo {
  run_id: string;
  session_id: SessionId;
  state: "queued" | "running" | "waiting_for_approval" | "finished";
  /** Unix epoch ms the run was accepted. */
  created_at: number;
  /** The RunResult once finished, else null. */
  result: RunResult | null;
  /** Approvals the run waits for. */
  approvals: Approval[];
}

/** What `POST /v1/runs` takes: a RunRequest where everything but `code` may be left out. */
export type RunInput = Partial<RunRequest> & { code: string };

interface SessionState {
  meta: SessionMeta;
  runtime: LanguageRuntime;
  allowedSideEffects: ReadonlySet<SideEffect>;
  /** JavaScript/TypeScript cells run so far (bounded), for the type-checker's view of globals. */
  cellHistory: { code: string; language: Language }[];
  cellHistoryChars: number;
  /** Input names bound in earlier runs (they stay globals). */
  inputNames: Set<string>;
  running: RunState | null;
  queue: RunState[];
  runCount: number;
  destroyed: boolean;
}

interface RunState {
  id: string;
  session: SessionState;
  language: Language;
  code: string;
  inputs: JsonObject;
  limits: SessionLimits;
  validateOnly: boolean;
  returnSnapshot: boolean;
  controller: AbortController;
  state: RunInfo["state"];
  createdAt: number;
  enqueuedAt: number;
  finishedAt: number;
  result: RunResult | null;
  done: Promise<RunResult>;
  resolve(result: RunResult): void;
  gateway: ToolGateway | null;
  pendingApprovals: number;
  /** Settles with a `waiting_for_approval` RunResult the first time the run waits for a person. */
  waiting: Promise<RunResult>;
  notifyWaiting(result: RunResult): void;
}

const DAY_MS = 86_400_000;

/** See the module comment. */
export class SessionManager {
  readonly #runtimes: RuntimeRegistry;
  readonly #tools: ToolRegistry;
  readonly #defaults: SessionLimits;
  readonly #ceilings: SessionLimits;
  readonly #maxSessions: number;
  readonly #idleTtlMs: number;
  readonly #maxQueuedRuns: number;
  readonly #retentionMs: number;
  readonly #maxRetainedRuns: number;
  readonly #defaultLanguage: Language;
  readonly #allowedSideEffects: ReadonlySet<SideEffect>;
  readonly #onSessionDestroyed: ((sessionId: string) => void) | undefined;
  readonly #sessions = new Map<SessionId, SessionState>();
  readonly #creating = new Map<SessionId, Promise<SessionState>>();
  readonly #runs = new Map<string, RunState>();
  /** Ids of finished runs, oldest first (Map keeps insertion order). */
  readonly #finishedRuns = new Map<string, true>();
  readonly #sweeper: NodeJS.Timeout;
  #closing = false;
  /** Tool calls waiting for a person (`GET /v1/approvals`). */
  readonly approvals: ApprovalQueue;
  /** Typed declarations of the tools (`GET /v1/capabilities/stubs`, TypeScript type-checks). */
  readonly stubs: StubCache;
  /** The sessions' file workspaces. */
  readonly workspaces: WorkspaceRegistry;

  /** @throws SandboxError `LIMIT_EXCEEDS_CEILING` when a default is above its ceiling. */
  constructor(options: SessionManagerOptions) {
    this.#runtimes = options.runtimes;
    this.#tools = options.tools;
    this.#defaults = { ...options.defaults };
    this.#ceilings = { ...options.ceilings };
    assertWithinCeilings(this.#defaults, this.#ceilings);
    this.#maxSessions = options.maxSessions ?? 500;
    this.#idleTtlMs = options.sessionIdleTtlMs ?? 15 * 60_000;
    this.#maxQueuedRuns = options.maxQueuedRuns ?? 8;
    this.#retentionMs = options.runRetentionMs ?? 10 * 60_000;
    this.#maxRetainedRuns = Math.max(0, options.maxRetainedRuns ?? 10_000);
    this.#defaultLanguage = options.defaultLanguage ?? "python";
    this.#allowedSideEffects = new Set(options.allowedSideEffects ?? SIDE_EFFECTS);
    this.#onSessionDestroyed = options.onSessionDestroyed;
    this.stubs = new StubCache(options.tools);
    this.workspaces = options.workspaces ?? new WorkspaceRegistry();
    this.approvals = new ApprovalQueue({
      ttlMs: options.approvalTtlMs ?? 10 * 60_000,
      onPending: (approval) => this.#onApprovalPending(approval),
      onSettled: (approval) => this.#onApprovalSettled(approval),
    });
    const sweepEveryMs = Math.max(250, Math.min(30_000, Math.floor(this.#idleTtlMs / 4)));
    this.#sweeper = setInterval(() => void this.sweep(), sweepEveryMs);
    this.#sweeper.unref();
  }

  /** Server-wide limits: defaults and ceilings. */
  get limits(): { defaults: SessionLimits; ceilings: SessionLimits } {
    return { defaults: { ...this.#defaults }, ceilings: { ...this.#ceilings } };
  }

  /** Number of sessions now. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /**
   * Creates a session (`POST /v1/sessions`).
   * @throws SandboxError `INVALID_SESSION_ID`, `SESSION_EXISTS`, `SESSION_LIMIT_REACHED`,
   *   `LIMIT_EXCEEDS_CEILING`, `UNSUPPORTED_LANGUAGE`, `UNKNOWN_RUNTIME`, `SERVICE_CLOSING`.
   */
  async createSession(input: CreateSessionInput = {}): Promise<SessionInfo> {
    const id = input.session_id === undefined ? randomUUID() : assertSessionId(input.session_id);
    if (this.#sessions.has(id) || this.#creating.has(id)) {
      throw new SandboxError("SESSION_EXISTS", `Session '${id}' already exists.`);
    }
    const session = await this.#create(
      id,
      input.language ?? this.#defaultLanguage,
      input.limits,
      input.runtime,
      input.allowed_side_effects ?? null,
    );
    return this.#info(session);
  }

  /** @throws SandboxError `SESSION_NOT_FOUND`, `INVALID_SESSION_ID`. */
  getSession(id: string): SessionInfo {
    return this.#info(this.#require(id));
  }

  /** Every session, oldest first. */
  listSessions(): SessionInfo[] {
    return [...this.#sessions.values()].map((session) => this.#info(session));
  }

  /**
   * Destroys a session: its running run is cancelled, queued runs end `cancelled`.
   * @throws SandboxError `SESSION_NOT_FOUND`, `INVALID_SESSION_ID`.
   */
  async destroySession(id: string): Promise<void> {
    const session = this.#require(id);
    await this.#destroy(session, "The session was destroyed.");
  }

  /**
   * Runs code (`POST /v1/runs`) and answers its RunResult once it ends — or, when a tool call
   * first needs a person's approval, a RunResult with status `waiting_for_approval` (the run
   * goes on; fetch its final result with {@link waitForRun}).
   * @throws SandboxError `SESSION_BUSY`, `SESSION_LIMIT_REACHED`, `SERVICE_CLOSING`.
   */
  async run(input: RunInput): Promise<RunResult> {
    const accepted = await this.submit(input);
    return Promise.race([accepted.done, accepted.waiting]);
  }

  /**
   * Accepts a run and answers at once with its id and a promise of its result.
   * @throws SandboxError like {@link run}.
   */
  async submit(
    input: RunInput,
  ): Promise<{ runId: string; done: Promise<RunResult>; waiting: Promise<RunResult> }> {
    if (this.#closing) throw new SandboxError("SERVICE_CLOSING", "The server is shutting down.");
    const runId = input.run_id ?? randomUUID();
    const sessionId = input.session_id ?? "default";
    const refuse = (error: ErrorObject) => {
      const done = Promise.resolve(this.#refusal(runId, sessionId, error));
      return { runId, done, waiting: done };
    };
    try {
      assertSessionId(sessionId);
      if (input.run_id !== undefined) {
        assertRunId(input.run_id);
        if (this.#runs.has(input.run_id)) {
          throw new SandboxError(
            "RUN_ID_IN_USE",
            `Run id '${input.run_id}' is in use; choose another.`,
          );
        }
      }
    } catch (error) {
      if (isSandboxError(error)) return refuse(error.toErrorObject());
      throw error;
    }

    let session: SessionState;
    let limits: SessionLimits;
    let language: Language;
    try {
      const existing = this.#sessions.get(sessionId) ?? (await this.#creating.get(sessionId));
      if (existing && !existing.destroyed) {
        session = existing;
        language = input.language ?? session.meta.language;
        if (!session.runtime.info.languages.includes(language)) {
          throw new SandboxError(
            "LANGUAGE_MISMATCH",
            `Session '${sessionId}' runs ${session.runtime.info.languages.join(" and ")}, not ${language}.`,
          );
        }
        limits = mergeLimits(session.meta.limits, input.limits, this.#ceilings, input.timeout_ms);
      } else {
        language = input.language ?? this.#defaultLanguage;
        // Check limits before creating anything, so a refused run leaves no session behind.
        mergeLimits(this.#defaults, input.limits, this.#ceilings, input.timeout_ms);
        session = await this.#create(sessionId, language, input.limits, input.runtime, null);
        limits = mergeLimits(session.meta.limits, null, this.#ceilings, input.timeout_ms);
      }
    } catch (error) {
      if (isSandboxError(error) && !isCapacityError(error)) return refuse(error.toErrorObject());
      throw error;
    }

    if (session.destroyed) {
      return refuse(
        errorObject(
          "SESSION_NOT_FOUND",
          `Session '${sessionId}' was destroyed while the run was accepted.`,
        ),
      );
    }
    if (session.queue.length >= this.#maxQueuedRuns && session.running) {
      throw new SandboxError(
        "SESSION_BUSY",
        `Session '${sessionId}' has ${session.queue.length} runs waiting (the most allowed); retry when one ends.`,
      );
    }
    let resolve!: (result: RunResult) => void;
    const done = new Promise<RunResult>((settle) => {
      resolve = settle;
    });
    let notifyWaiting!: (result: RunResult) => void;
    const waiting = new Promise<RunResult>((settle) => {
      notifyWaiting = settle;
    });
    const run: RunState = {
      id: runId,
      session,
      language,
      code: input.code,
      inputs: input.inputs ?? {},
      limits,
      validateOnly: input.validate_only ?? false,
      returnSnapshot: input.return_snapshot ?? false,
      controller: new AbortController(),
      state: "queued",
      createdAt: Date.now(),
      enqueuedAt: performance.now(),
      finishedAt: 0,
      result: null,
      done,
      resolve,
      gateway: null,
      pendingApprovals: 0,
      waiting,
      notifyWaiting,
    };
    this.#runs.set(runId, run);
    session.queue.push(run);
    this.#touch(session);
    this.#pump(session);
    return { runId, done, waiting };
  }

  /**
   * Cancels a queued or running run; answers false when it had already finished.
   * @throws SandboxError `RUN_NOT_FOUND`.
   */
  cancelRun(runId: string): boolean {
    const run = this.#runs.get(runId);
    if (!run) throw new SandboxError("RUN_NOT_FOUND", `No run '${runId}'.`);
    if (run.state === "finished") return false;
    if (run.state === "queued") {
      const queue = run.session.queue;
      queue.splice(queue.indexOf(run), 1);
      this.#finish(
        run,
        this.#refusal(
          run.id,
          run.session.meta.id,
          errorObject("RUN_CANCELLED", "The run was cancelled before it started."),
          "cancelled",
        ),
      );
      return true;
    }
    run.controller.abort(new SandboxError("RUN_CANCELLED", "The run was cancelled."));
    return true;
  }

  /**
   * A run's state and, once finished, its result.
   * @throws SandboxError `RUN_NOT_FOUND`.
   */
  getRun(runId: string): RunInfo {
    const run = this.#runs.get(runId);
    if (!run)
      throw new SandboxError(
        "RUN_NOT_FOUND",
        `No run '${runId}' (finished runs are kept for a while only).`,
      );
    return {
      run_id: run.id,
      session_id: run.session.meta.id,
      state: run.state,
      created_at: run.createdAt,
      result: run.result,
      approvals: run.pendingApprovals > 0 ? this.approvals.pendingFor(run.id) : [],
    };
  }

  /**
   * Waits up to `waitMs` for a run to finish, then answers {@link getRun}.
   * @throws SandboxError `RUN_NOT_FOUND`.
   */
  async waitForRun(runId: string, waitMs: number): Promise<RunInfo> {
    const run = this.#runs.get(runId);
    if (!run) return this.getRun(runId);
    if (run.state !== "finished" && waitMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        run.done,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, waitMs);
        }),
      ]);
      clearTimeout(timer);
    }
    return this.getRun(runId);
  }

  /** Runs that have not finished, oldest first. */
  activeRuns(): RunInfo[] {
    return [...this.#runs.values()]
      .filter((run) => run.state !== "finished")
      .map((run) => this.getRun(run.id));
  }

  /** Destroys expired idle sessions and forgets old finished runs (runs periodically). */
  async sweep(now = Date.now()): Promise<void> {
    for (const session of [...this.#sessions.values()]) {
      const idle = !session.running && session.queue.length === 0;
      if (idle && now - session.meta.last_used_at >= this.#idleTtlMs) {
        await this.#destroy(session, "The session expired.");
      }
    }
    for (const [id, run] of this.#runs) {
      if (run.state === "finished" && now - run.finishedAt >= this.#retentionMs)
        this.#runs.delete(id);
    }
  }

  /** Stops taking runs, cancels what runs, destroys every session. */
  async close(): Promise<void> {
    this.#closing = true;
    clearInterval(this.#sweeper);
    await Promise.allSettled(
      [...this.#sessions.values()].map((session) =>
        this.#destroy(session, "The server is shutting down."),
      ),
    );
  }

  async #create(
    id: SessionId,
    language: Language,
    requested: Partial<SessionLimits> | null | undefined,
    runtimeId: string | undefined,
    sideEffects: readonly SideEffect[] | null,
  ): Promise<SessionState> {
    if (this.#closing) throw new SandboxError("SERVICE_CLOSING", "The server is shutting down.");
    const pending = this.#creating.get(id);
    if (pending) return pending;
    if (this.#sessions.size + this.#creating.size >= this.#maxSessions) {
      throw new SandboxError(
        "SESSION_LIMIT_REACHED",
        `This server holds its maximum of ${this.#maxSessions} sessions.`,
        { hint: "Destroy a session you no longer need, or wait for idle ones to expire." },
      );
    }
    const runtime = this.#runtimes.resolve(language, runtimeId);
    const limits = mergeLimits(this.#defaults, requested, this.#ceilings);
    const creation = (async () => {
      await runtime.createSession(id, limits, language);
      const now = Date.now();
      const session: SessionState = {
        meta: {
          id,
          created_at: now,
          last_used_at: now,
          language,
          limits,
          snapshot_version: SNAPSHOT_VERSION,
        },
        runtime,
        allowedSideEffects: new Set(
          (sideEffects ?? [...this.#allowedSideEffects]).filter((effect) =>
            this.#allowedSideEffects.has(effect),
          ),
        ),
        cellHistory: [],
        cellHistoryChars: 0,
        inputNames: new Set(),
        running: null,
        queue: [],
        runCount: 0,
        destroyed: false,
      };
      this.#sessions.set(id, session);
      return session;
    })();
    this.#creating.set(id, creation);
    try {
      return await creation;
    } finally {
      this.#creating.delete(id);
    }
  }

  #require(id: string): SessionState {
    assertSessionId(id);
    const session = this.#sessions.get(id);
    if (!session) throw new SandboxError("SESSION_NOT_FOUND", `No session '${id}'.`);
    return session;
  }

  async #destroy(session: SessionState, why: string): Promise<void> {
    if (session.destroyed) return;
    session.destroyed = true;
    this.#sessions.delete(session.meta.id);
    for (const run of session.queue.splice(0)) {
      this.#finish(
        run,
        this.#refusal(run.id, session.meta.id, errorObject("RUN_CANCELLED", why), "cancelled"),
      );
    }
    session.running?.controller.abort(new SandboxError("RUN_CANCELLED", why));
    this.workspaces.delete(session.meta.id);
    await session.runtime.destroySession(session.meta.id).catch(() => false);
    try {
      this.#onSessionDestroyed?.(session.meta.id);
    } catch {
      // A listener's failure must not keep the session alive.
    }
  }

  #touch(session: SessionState): void {
    session.meta.last_used_at = Date.now();
  }

  #pump(session: SessionState): void {
    if (session.running || session.destroyed) return;
    const next = session.queue.shift();
    if (!next) return;
    session.running = next;
    next.state = "running";
    void this.#execute(next).then((result) => {
      session.running = null;
      session.runCount += 1;
      this.#touch(session);
      this.#finish(next, result);
      this.#pump(session);
    });
  }

  async #execute(run: RunState): Promise<RunResult> {
    const started = performance.now();
    const queueMs = started - run.enqueuedAt;
    const session = run.session;
    const gateway = new ToolGateway({
      registry: this.#tools,
      sessionId: session.meta.id,
      runId: run.id,
      maxExternalCalls: run.limits.max_external_calls,
      deadline: started + run.limits.wall_ms,
      signal: run.controller.signal,
      allowedSideEffects: session.allowedSideEffects,
      approvals: this.approvals,
      session: { language: session.meta.language, runtime: session.runtime.info.id },
    });
    run.gateway = gateway;
    let outcome: RuntimeRunOutcome;
    if (run.controller.signal.aborted) {
      outcome = hostOutcome("cancelled", errorObject("RUN_CANCELLED", "The run was cancelled."));
    } else {
      try {
        outcome = await session.runtime.run({
          runId: run.id,
          sessionId: session.meta.id,
          language: run.language,
          code: run.code,
          inputs: run.inputs,
          limits: run.limits,
          validateOnly: run.validateOnly,
          tools: gateway,
          signal: run.controller.signal,
        });
      } catch (error) {
        const failure = isSandboxError(error)
          ? error.toErrorObject()
          : errorObject(
              "ENGINE_CRASHED",
              `The backend failed: ${error instanceof Error ? error.message : String(error)}`,
            );
        outcome = hostOutcome("interrupted", failure);
      }
    }
    gateway.settle();
    if (run.validateOnly && run.language === "typescript" && outcome.status === "ok") {
      outcome = await this.#typecheck(run, outcome);
    } else if (!run.validateOnly && outcome.status !== "validation_error") {
      this.#remember(run);
    }
    const diagnostics: Diagnostic[] = [...outcome.diagnostics];
    let status: RunStatus = outcome.status;
    let error = outcome.error;
    if (error && (status === "runtime_error" || status === "permission_denied")) {
      // Guest code can throw a ToolError of its own making: its code counts only when a call
      // of this run really failed with it.
      const code = error.code;
      const genuine =
        code === "RUNTIME_ERROR" || gateway.records.some((record) => record.error?.code === code);
      if (!genuine) {
        error = { ...error, code: "RUNTIME_ERROR" };
        status = "runtime_error";
        const index = diagnostics.findIndex(
          (item) => item.severity === "error" && item.code === code,
        );
        if (index >= 0) diagnostics[index] = { ...diagnostics[index]!, code: "RUNTIME_ERROR" };
      }
    }
    const fatal = gateway.fatal;
    if (fatal) {
      status = fatal.status;
      error = fatal.error;
      const index = diagnostics.findIndex((item) => item.severity === "error");
      const diagnostic: Diagnostic = {
        severity: "error",
        code: fatal.error.code,
        message: fatal.error.message,
        hint: fatal.error.hint,
        span: fatal.error.span,
      };
      if (index >= 0) diagnostics[index] = diagnostic;
      else diagnostics.unshift(diagnostic);
    }
    if (run.returnSnapshot) {
      diagnostics.push({
        severity: "warning",
        code: "SNAPSHOT_NOT_SUPPORTED",
        message: `return_snapshot was asked, but ${session.runtime.info.id} sessions cannot be snapshotted yet.`,
        hint: null,
        span: null,
      });
    }
    const records = [...gateway.records];
    return {
      status,
      result: outcome.result,
      stdout: outcome.stdout,
      stderr: outcome.stderr,
      diagnostics,
      external_calls: records,
      snapshot_id: null,
      metrics: {
        duration_ms: clampU32(performance.now() - started),
        memory_peak_bytes: Math.max(0, Math.round(outcome.memoryPeakBytes)),
        instructions: Math.max(0, Math.round(outcome.instructions)),
        external_calls_count: records.length,
        cpu_ms: clampU32(outcome.cpuMs),
        queue_ms: clampU32(queueMs),
      },
      error,
      run_id: run.id,
      session_id: session.meta.id,
    };
  }

  /** Keeps what the type-checker needs to know of a run that executed. */
  #remember(run: RunState): void {
    const session = run.session;
    for (const name of Object.keys(run.inputs)) session.inputNames.add(name);
    if (run.language !== "javascript" && run.language !== "typescript") return;
    session.cellHistory.push({ code: run.code, language: run.language });
    session.cellHistoryChars += run.code.length;
    // Bounded: the oldest cells fall off (their globals are then unknown to the checker).
    while (session.cellHistory.length > 200 || session.cellHistoryChars > 2_000_000) {
      session.cellHistoryChars -= session.cellHistory.shift()!.code.length;
    }
  }

  /** Type-checks a TypeScript cell for validate_only; type errors make it a validation_error. */
  async #typecheck(run: RunState, outcome: RuntimeRunOutcome): Promise<RuntimeRunOutcome> {
    const toolNames = new Set(this.#tools.names());
    const globals: Record<string, string> = {};
    const session = run.session;
    for (const cell of session.cellHistory) {
      if (cell.language !== "javascript" && cell.language !== "typescript") continue;
      for (const name of declaredGlobals(cell.code, cell.language)) globals[name] = "any";
    }
    for (const name of session.inputNames) globals[name] = "any";
    for (const [name, value] of Object.entries(run.inputs)) globals[name] = typeOfJson(value);
    for (const name of Object.keys(globals)) {
      if (
        toolNames.has(name) ||
        name === "tools" ||
        name === "ToolError" ||
        !/^[A-Za-z_$][\w$]*$/.test(name)
      ) {
        delete globals[name];
      }
    }
    let found: Diagnostic[];
    try {
      found = await typecheckCell({
        code: run.code,
        stubs: await this.stubs.get("typescript"),
        globals,
      });
    } catch (error) {
      return {
        ...outcome,
        diagnostics: [
          ...outcome.diagnostics,
          {
            severity: "warning",
            code: "TYPECHECK_UNAVAILABLE",
            message: `Types were not checked: ${error instanceof Error ? error.message : String(error)}`,
            hint: null,
            span: null,
          },
        ],
      };
    }
    if (found.length === 0) return outcome;
    const first = found[0]!;
    return {
      ...outcome,
      status: "validation_error",
      error: errorObject("TYPE_ERROR", first.message, { span: first.span }),
      diagnostics: [...found, ...outcome.diagnostics],
    };
  }

  #onApprovalPending(approval: Approval): void {
    const run = this.#runs.get(approval.run_id);
    if (!run || run.state === "finished") return;
    run.pendingApprovals += 1;
    if (run.pendingApprovals === 1) {
      run.state = "waiting_for_approval";
      run.session.runtime.pauseClock?.(run.id, true);
    }
    run.notifyWaiting(this.#waitingResult(run));
  }

  #onApprovalSettled(approval: Approval): void {
    const run = this.#runs.get(approval.run_id);
    if (!run || run.pendingApprovals === 0) return;
    run.pendingApprovals -= 1;
    if (run.pendingApprovals === 0 && run.state === "waiting_for_approval") {
      run.state = "running";
      run.session.runtime.pauseClock?.(run.id, false);
    }
  }

  /** The RunResult answered while a run waits for approvals (the run goes on). */
  #waitingResult(run: RunState): RunResult {
    const pending = this.approvals.pendingFor(run.id);
    const diagnostics: Diagnostic[] = pending.map((approval) => ({
      severity: "info",
      code: "APPROVAL_REQUIRED",
      message: `The call to '${approval.name}' waits for approval ${approval.approval_id} (${approval.reason ?? "manual policy"}).`,
      hint: `POST /v1/approvals/${approval.approval_id} with {"decision": "approve"} or {"decision": "deny"}; then GET /v1/runs/${run.id}?wait_ms=30000 for the final result.`,
      span: null,
    }));
    const records = run.gateway ? run.gateway.records.map((record) => ({ ...record })) : [];
    return {
      status: "waiting_for_approval",
      result: null,
      stdout: "",
      stderr: "",
      diagnostics,
      external_calls: records,
      snapshot_id: null,
      metrics: {
        duration_ms: 0,
        memory_peak_bytes: 0,
        instructions: 0,
        external_calls_count: records.length,
      },
      error: null,
      run_id: run.id,
      session_id: run.session.meta.id,
      approvals: pending,
    };
  }

  #finish(run: RunState, result: RunResult): void {
    run.state = "finished";
    run.result = result;
    run.finishedAt = Date.now();
    run.resolve(result);
    this.#finishedRuns.set(run.id, true);
    // Bounded memory under load: past the cap the oldest finished runs are forgotten early.
    while (this.#finishedRuns.size > this.#maxRetainedRuns) {
      const oldest = this.#finishedRuns.keys().next().value;
      if (oldest === undefined) break;
      this.#forgetRun(oldest);
    }
  }

  #forgetRun(id: string): void {
    this.#finishedRuns.delete(id);
    this.#runs.delete(id);
  }

  #refusal(
    runId: string,
    sessionId: string,
    error: ErrorObject,
    status: RunStatus = "validation_error",
  ): RunResult {
    return {
      status,
      result: null,
      stdout: "",
      stderr: "",
      diagnostics: [
        {
          severity: "error",
          code: error.code,
          message: error.message,
          hint: error.hint,
          span: error.span,
        },
      ],
      external_calls: [],
      snapshot_id: null,
      metrics: { duration_ms: 0, memory_peak_bytes: 0, instructions: 0, external_calls_count: 0 },
      error,
      run_id: runId,
      session_id: sessionId,
    };
  }

  #info(session: SessionState): SessionInfo {
    return {
      ...session.meta,
      limits: { ...session.meta.limits },
      runtime: session.runtime.info.id,
      state: session.running ? "running" : "idle",
      queued_runs: session.queue.length,
      run_count: session.runCount,
      allowed_side_effects: SIDE_EFFECTS.filter((effect) => session.allowedSideEffects.has(effect)),
      expires_at: Math.min(
        session.meta.last_used_at + this.#idleTtlMs,
        session.meta.last_used_at + 365 * DAY_MS,
      ),
    };
  }
}

function isCapacityError(error: SandboxError): boolean {
  return (
    error.code === "SESSION_LIMIT_REACHED" ||
    error.code === "SERVICE_CLOSING" ||
    error.code === "SESSION_BUSY"
  );
}

function hostOutcome(status: RunStatus, error: ErrorObject): RuntimeRunOutcome {
  return {
    status,
    result: null,
    stdout: "",
    stderr: "",
    diagnostics: [
      {
        severity: "error",
        code: error.code,
        message: error.message,
        hint: error.hint,
        span: error.span,
      },
    ],
    error,
    memoryPeakBytes: 0,
    instructions: 0,
    cpuMs: 0,
    sessionReset: false,
  };
}

function clampU32(value: number): number {
  return Math.min(4_294_967_295, Math.max(0, Math.round(value)));
}
