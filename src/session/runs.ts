/**
 * The runs a session manager knows of: accepted ones until they finish, and finished ones for
 * a while after (`runRetentionMs`, at most `maxRetainedRuns`), so a result can be fetched again
 * by run id. Runs are cancelled here, and follow their tool calls' approvals here.
 *
 * @module
 */
import type { RunResult } from "../contract/types.ts";
import { errorObject, SandboxError } from "../errors.ts";
import type { Approval } from "../tools/approvals.ts";
import { refusal, waitingResult } from "./results.ts";
import type { RunState } from "./state.ts";
import type { RunInfo } from "./types.ts";

/** Options of {@link RunTable}. Times in ms. */
export interface RunTableOptions {
  /** How long a finished run's result can be fetched again. */
  retentionMs: number;
  /** Most finished runs remembered at once; the oldest are forgotten first. */
  maxRetainedRuns: number;
  /** The approvals a run waits for now (the manager's approval queue). */
  pendingFor: (runId: string) => Approval[];
}

/** What a run is accepted with; the rest (its state, promises and gateway) starts fresh. */
export type RunStateInit = Pick<
  RunState,
  | "id"
  | "session"
  | "language"
  | "code"
  | "inputs"
  | "limits"
  | "validateOnly"
  | "returnSnapshot"
  | "onOutput"
  | "ephemeral"
>;

/** The runs of a session manager, by id (see the module comment). */
export class RunTable {
  readonly #runs = new Map<string, RunState>();
  /** Ids of finished runs, oldest first (Map keeps insertion order). */
  readonly #finishedRuns = new Map<string, true>();
  readonly #retentionMs: number;
  readonly #maxRetainedRuns: number;
  readonly #pendingFor: (runId: string) => Approval[];

  constructor(options: RunTableOptions) {
    this.#retentionMs = options.retentionMs;
    this.#maxRetainedRuns = options.maxRetainedRuns;
    this.#pendingFor = options.pendingFor;
  }

  /** Whether a run with this id is known (not finished, or finished and still kept). */
  has(runId: string): boolean {
    return this.#runs.has(runId);
  }

  /** Accepts a run: it is `queued` from now, and its promises settle as it goes. */
  add(init: RunStateInit): RunState {
    let resolve!: (result: RunResult) => void;
    const done = new Promise<RunResult>((settle) => {
      resolve = settle;
    });
    let notifyWaiting!: (result: RunResult) => void;
    const waiting = new Promise<RunResult>((settle) => {
      notifyWaiting = settle;
    });
    const run: RunState = {
      ...init,
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
    this.#runs.set(run.id, run);
    return run;
  }

  /** Ends a run with its result; past `maxRetainedRuns` the oldest finished runs are forgotten. */
  finish(run: RunState, result: RunResult): void {
    run.state = "finished";
    run.result = result;
    run.finishedAt = Date.now();
    run.resolve(result);
    this.#finishedRuns.set(run.id, true);
    // Bounded memory under load: past the cap the oldest finished runs are forgotten early.
    while (this.#finishedRuns.size > this.#maxRetainedRuns) {
      const oldest = this.#finishedRuns.keys().next().value;
      if (oldest === undefined) break;
      this.#forget(oldest);
    }
  }

  /**
   * Cancels a queued or running run; answers false when it had already finished. A queued
   * run ends `cancelled` at once; a running one is aborted and ends as its backend stops.
   * @throws SandboxError `RUN_NOT_FOUND`.
   */
  cancel(runId: string): boolean {
    const run = this.#runs.get(runId);
    if (!run) throw new SandboxError("RUN_NOT_FOUND", `No run '${runId}'.`);
    if (run.state === "finished") return false;
    if (run.state === "queued") {
      const queue = run.session.queue;
      queue.splice(queue.indexOf(run), 1);
      this.finish(
        run,
        refusal(
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
  info(runId: string): RunInfo {
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
      approvals: run.pendingApprovals > 0 ? this.#pendingFor(run.id) : [],
    };
  }

  /**
   * Waits up to `waitMs` for a run to finish, then answers {@link info}.
   * @throws SandboxError `RUN_NOT_FOUND`.
   */
  async wait(runId: string, waitMs: number): Promise<RunInfo> {
    const run = this.#runs.get(runId);
    if (!run) return this.info(runId);
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
    return this.info(runId);
  }

  /** Runs that have not finished, oldest first. */
  active(): RunInfo[] {
    return [...this.#runs.values()]
      .filter((run) => run.state !== "finished")
      .map((run) => this.info(run.id));
  }

  /** Forgets runs that finished `retentionMs` or more before `now` (Unix epoch ms). */
  sweep(now: number): void {
    for (const [id, run] of this.#runs) {
      if (run.state === "finished" && now - run.finishedAt >= this.#retentionMs)
        this.#runs.delete(id);
    }
  }

  /** A tool call of a run waits for a person: the run waits too (its clock paused). */
  onApprovalPending(approval: Approval): void {
    const run = this.#runs.get(approval.run_id);
    if (!run || run.state === "finished") return;
    run.pendingApprovals += 1;
    if (run.pendingApprovals === 1) {
      run.state = "waiting_for_approval";
      run.session.runtime.pauseClock?.(run.id, true);
    }
    run.notifyWaiting(waitingResult(run, this.#pendingFor(run.id)));
  }

  /** A person decided (or the approval expired): once none is pending the run goes on. */
  onApprovalSettled(approval: Approval): void {
    const run = this.#runs.get(approval.run_id);
    if (!run || run.pendingApprovals === 0) return;
    run.pendingApprovals -= 1;
    if (run.pendingApprovals === 0 && run.state === "waiting_for_approval") {
      run.state = "running";
      run.session.runtime.pauseClock?.(run.id, false);
    }
  }

  #forget(id: string): void {
    this.#finishedRuns.delete(id);
    this.#runs.delete(id);
  }
}
