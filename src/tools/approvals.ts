/**
 * Approvals: tool calls that wait for a person (`ApprovalPolicy::Manual`, or an auto rule that
 * escalated). Each is an {@link Approval} with an id; `GET /v1/approvals` lists what waits and
 * `POST /v1/approvals/{id}` approves or denies with a reason. A pending approval expires after
 * its time to live and the call is then denied (`APPROVAL_EXPIRED`); a run that ends while it
 * waits cancels it.
 *
 * @module
 */
import { randomUUID } from "node:crypto";
import type { JsonObject, JsonValue, SideEffect } from "../contract/types.ts";
import { SandboxError } from "../errors.ts";

/** Where an approval stands. */
export type ApprovalStatus = "pending" | "approved" | "denied" | "expired" | "cancelled";

/** A tool call waiting for, or past, a person's decision (wire shape of `/v1/approvals`). */
export interface Approval {
  approval_id: string;
  run_id: string;
  session_id: string;
  /** The tool. */
  name: string;
  args: JsonValue[];
  kwargs: JsonObject;
  /** `digest_json({name, args, kwargs})`, as in the call's record. */
  request_digest: string;
  side_effect: SideEffect;
  status: ApprovalStatus;
  /** Why it was asked (policy or rule), then why it was decided. */
  reason: string | null;
  /** Unix epoch ms. */
  created_at: number;
  /** Unix epoch ms after which a pending approval is denied. */
  expires_at: number;
  /** Unix epoch ms of the decision, else null. */
  decided_at: number | null;
}

/** What the gateway asks for. */
export interface ApprovalRequest {
  runId: string;
  sessionId: string;
  name: string;
  args: JsonValue[];
  kwargs: JsonObject;
  requestDigest: string;
  sideEffect: SideEffect;
  /** Why a person must decide ("manual policy", or the rule's reason). */
  reason: string;
}

/** How an approval ended. */
export interface ApprovalDecision {
  status: Exclude<ApprovalStatus, "pending">;
  reason: string;
}

/** What a gateway needs to ask for approvals. Implemented by {@link ApprovalQueue}. */
export interface ApprovalBroker {
  /** Waits for a decision; `signal` cancels the request (the run ended). */
  request(request: ApprovalRequest, signal: AbortSignal): Promise<ApprovalDecision>;
}

/** Options of {@link ApprovalQueue}. */
export interface ApprovalQueueOptions {
  /** Time a pending approval waits before it is denied, in ms (default 10 min). */
  ttlMs?: number;
  /** Decided approvals remembered for listing, at most (default 1,000). */
  maxDecided?: number;
  /** Called when an approval starts waiting. */
  onPending?(approval: Approval): void;
  /** Called when an approval stops waiting (whatever the outcome). */
  onSettled?(approval: Approval): void;
}

interface Entry {
  approval: Approval;
  settle(decision: ApprovalDecision): void;
}

/** Pending and recently decided approvals of a server. */
export class ApprovalQueue implements ApprovalBroker {
  readonly #ttlMs: number;
  readonly #maxDecided: number;
  readonly #options: ApprovalQueueOptions;
  readonly #entries = new Map<string, Entry>();
  readonly #decided: string[] = [];

  constructor(options: ApprovalQueueOptions = {}) {
    this.#options = options;
    this.#ttlMs = options.ttlMs ?? 10 * 60_000;
    this.#maxDecided = options.maxDecided ?? 1_000;
  }

  request(request: ApprovalRequest, signal: AbortSignal): Promise<ApprovalDecision> {
    const now = Date.now();
    const approval: Approval = {
      approval_id: randomUUID(),
      run_id: request.runId,
      session_id: request.sessionId,
      name: request.name,
      args: request.args,
      kwargs: request.kwargs,
      request_digest: request.requestDigest,
      side_effect: request.sideEffect,
      status: "pending",
      reason: request.reason,
      created_at: now,
      expires_at: now + this.#ttlMs,
      decided_at: null,
    };
    return new Promise<ApprovalDecision>((resolve) => {
      const timer = setTimeout(
        () => settle({ status: "expired", reason: `No decision within ${this.#ttlMs} ms.` }),
        this.#ttlMs,
      );
      timer.unref();
      const onAbort = () =>
        settle({ status: "cancelled", reason: "The run ended while the call waited." });
      const settle = (decision: ApprovalDecision) => {
        if (approval.status !== "pending") return;
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        approval.status = decision.status;
        approval.reason = decision.reason;
        approval.decided_at = Date.now();
        this.#remember(approval.approval_id);
        this.#options.onSettled?.(approval);
        resolve(decision);
      };
      this.#entries.set(approval.approval_id, { approval, settle });
      if (signal.aborted) {
        onAbort();
        return;
      }
      signal.addEventListener("abort", onAbort, { once: true });
      this.#options.onPending?.(approval);
    });
  }

  /** Approvals, newest first; by default only pending ones. */
  list(
    filter: { status?: ApprovalStatus | "all"; sessionId?: string; runId?: string } = {},
  ): Approval[] {
    const status = filter.status ?? "pending";
    return [...this.#entries.values()]
      .map((entry) => entry.approval)
      .filter(
        (approval) =>
          (status === "all" || approval.status === status) &&
          (filter.sessionId === undefined || approval.session_id === filter.sessionId) &&
          (filter.runId === undefined || approval.run_id === filter.runId),
      )
      .sort((a, b) => b.created_at - a.created_at);
  }

  /**
   * One approval.
   * @throws SandboxError `APPROVAL_NOT_FOUND`.
   */
  get(id: string): Approval {
    const entry = this.#entries.get(id);
    if (!entry) throw new SandboxError("APPROVAL_NOT_FOUND", `No approval '${id}'.`);
    return entry.approval;
  }

  /**
   * Approves or denies a pending approval; the waiting call goes on (or is denied) at once.
   * @throws SandboxError `APPROVAL_NOT_FOUND`, `APPROVAL_ALREADY_DECIDED`.
   */
  decide(id: string, approve: boolean, reason?: string): Approval {
    const entry = this.#entries.get(id);
    if (!entry) throw new SandboxError("APPROVAL_NOT_FOUND", `No approval '${id}'.`);
    if (entry.approval.status !== "pending") {
      throw new SandboxError(
        "APPROVAL_ALREADY_DECIDED",
        `Approval '${id}' is ${entry.approval.status}; it cannot be decided again.`,
      );
    }
    entry.settle({
      status: approve ? "approved" : "denied",
      reason: reason?.trim() || (approve ? "Approved." : "Denied."),
    });
    return entry.approval;
  }

  /** Pending approvals of a run. */
  pendingFor(runId: string): Approval[] {
    return this.list({ runId });
  }

  #remember(id: string): void {
    this.#decided.push(id);
    while (this.#decided.length > this.#maxDecided) {
      const oldest = this.#decided.shift();
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
  }
}
