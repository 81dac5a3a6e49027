/**
 * The per-run path of every tool call from guest code to a handler and back.
 *
 * In order — each failure is recorded in an {@link ExternalCallRecord} and raised in the guest
 * with its code:
 *
 * | step | on failure: status / code |
 * |---|---|
 * | the call's JSON is read, the request digest taken | error / `INVALID_ARGUMENTS` |
 * | the run's call budget (`max_external_calls`) | denied / `EXTERNAL_CALL_LIMIT` (the run ends) |
 * | the tool exists | denied / `UNKNOWN_TOOL` |
 * | its side effect is allowed for the session | denied / `SIDE_EFFECT_DENIED` |
 * | `max_request_bytes` | denied / `REQUEST_TOO_LARGE` |
 * | `input_schema`, kwargs schema | error / `INVALID_ARGUMENTS` |
 * | approval policy: an auto rule, or a person | denied / `APPROVAL_DENIED`, `APPROVAL_EXPIRED` |
 * | `rate_per_min` (across sessions) | denied / `RATE_LIMITED` |
 * | `concurrency` (across sessions; waits for a slot) | denied / `CONCURRENCY_LIMIT` |
 * | the handler, within `timeout_ms` and the run's deadline | timeout / `TOOL_TIMEOUT`; error / tool's code or `TOOL_ERROR` |
 * | the value: JSON, `max_response_bytes`, `output_schema` | error / `INVALID_TOOL_OUTPUT`, `RESPONSE_TOO_LARGE` |
 *
 * While a call waits for a person the record's status is `approval_pending`; time spent waiting
 * moves the run's deadline (it does not count toward `wall_ms`). A denied call past the budget
 * sets {@link ToolGateway.fatal}: the backend stops the guest and the run ends
 * `resource_exhausted`.
 *
 * @module
 */
import type {
  CallStatus,
  ErrorObject,
  ExternalCallRecord,
  JsonObject,
  JsonValue,
  RunStatus,
  SideEffect,
} from "../contract/types.ts";
import { digestBytes, digestJsonText } from "../digest.ts";
import { type ErrorCode, errorObject } from "../errors.ts";
import { describeSchemaErrors } from "../json-schema.ts";
import type { ToolBridge, ToolCallReply } from "../runtime/interface.ts";
import type { JournalCall } from "../snapshot/journal.ts";
import type { ApprovalBroker } from "./approvals.ts";
import { type ToolEntry, ToolError, type ToolRegistry } from "./registry.ts";

/** What a gateway needs to know about its run. */
export interface ToolGatewayOptions {
  registry: ToolRegistry;
  sessionId: string;
  runId: string;
  /** Calls allowed in this run (`SessionLimits.max_external_calls`). */
  maxExternalCalls: number;
  /** `performance.now()` time after which no call may still be running (the run's wall deadline). */
  deadline: number;
  /** Aborted when the run ends early (cancel, timeout); in-flight handlers see it. */
  signal: AbortSignal;
  /** Side-effect classes this run may use; absent means all. */
  allowedSideEffects?: ReadonlySet<SideEffect>;
  /** Where calls that need a person go; absent: such calls are denied (`APPROVAL_DENIED`). */
  approvals?: ApprovalBroker;
  /** The session as approval rules see it. */
  session?: { language: string; runtime: string };
}

/** Why a call ended the run, when one did. */
export interface FatalCall {
  status: RunStatus;
  error: ErrorObject;
}

const ENCODER = new TextEncoder();

/** Codes that mean a policy or a person refused the call (an uncaught one ends the run `permission_denied`). */
export const PERMISSION_CODES: ReadonlySet<string> = new Set([
  "SIDE_EFFECT_DENIED",
  "APPROVAL_DENIED",
  "APPROVAL_EXPIRED",
]);

/** Status of a run that ended on an uncaught tool error with this code. */
export function runStatusForToolError(code: string): RunStatus {
  return PERMISSION_CODES.has(code) ? "permission_denied" : "runtime_error";
}

/** A refused or failed call, thrown inside the gateway and turned into a record and a reply. */
class CallFailure {
  readonly status: CallStatus;
  readonly code: ErrorCode | string;
  readonly message: string;
  constructor(status: CallStatus, code: ErrorCode | string, message: string) {
    this.status = status;
    this.code = code;
    this.message = message;
  }
}

/**
 * One run's tool gateway. Backends see it as a {@link ToolBridge}; the session manager reads
 * {@link records} and {@link fatal} when the run ends, after calling {@link settle}.
 */
export class ToolGateway implements ToolBridge {
  readonly #options: ToolGatewayOptions;
  readonly #records: ExternalCallRecord[] = [];
  readonly #replies: ToolCallReply[] = [];
  readonly #pending = new Map<number, AbortController>();
  #deadline: number;
  #budgetUsed = 0;
  #fatal: FatalCall | null = null;
  #settled = false;

  constructor(options: ToolGatewayOptions) {
    this.#options = options;
    this.#deadline = options.deadline;
  }

  /** Tool names the guest may call, sorted. */
  get names(): readonly string[] {
    return this.#options.registry.names();
  }

  /** Registry version, so backends can tell when the tool set changed. */
  get version(): number {
    return this.#options.registry.version;
  }

  /** Records in call order (the order calls reached the host). */
  get records(): readonly ExternalCallRecord[] {
    return this.#records;
  }

  /** Set when a call ended the run (budget exhausted). */
  get fatal(): FatalCall | null {
    return this.#fatal;
  }

  /**
   * Performs one call. `argsJson` must be a JSON array and `kwargsJson` a JSON object, as the
   * guest serialized them; the request digest is taken over that text so the integer/float
   * spelling of the guest's numbers is kept. Never rejects.
   */
  async call(name: string, argsJson: string, kwargsJson: string): Promise<ToolCallReply> {
    // #call opens its record before its first await, so the record's index is known here.
    const index = this.#records.length;
    const reply = await this.#call(name, argsJson, kwargsJson);
    this.#replies[index] = reply;
    return reply;
  }

  /**
   * The run's calls as a journal records them (see ../snapshot/journal.ts): name, request
   * digest and the reply the guest got, or null for a call still in flight when the run ended.
   */
  journal(): JournalCall[] {
    return this.#records.map((record, index) => ({
      name: record.name,
      request_digest: record.request_digest,
      reply: this.#replies[index] ?? null,
    }));
  }

  async #call(name: string, argsJson: string, kwargsJson: string): Promise<ToolCallReply> {
    const started = performance.now();
    const requestText = `{"name":${JSON.stringify(String(name))},"args":${argsJson},"kwargs":${kwargsJson}}`;
    let requestDigest: string;
    let args: JsonValue[];
    let kwargs: JsonObject;
    try {
      requestDigest = digestJsonText(requestText);
      args = JSON.parse(argsJson);
      kwargs = JSON.parse(kwargsJson);
      if (!Array.isArray(args)) throw new TypeError("args must be an array");
      if (kwargs === null || typeof kwargs !== "object" || Array.isArray(kwargs)) {
        throw new TypeError("kwargs must be an object");
      }
    } catch (error) {
      const index = this.#open(name, digestBytes(requestText));
      return this.#fail(
        index,
        started,
        new CallFailure("error", "INVALID_ARGUMENTS", (error as Error).message),
      );
    }
    const index = this.#open(name, requestDigest);
    if (this.#settled) {
      return this.#fail(
        index,
        started,
        new CallFailure("denied", "RUN_CANCELLED", "The run has ended."),
      );
    }
    const limit = this.#options.maxExternalCalls;
    if (this.#budgetUsed >= limit) {
      const reply = this.#fail(
        index,
        started,
        new CallFailure(
          "denied",
          "EXTERNAL_CALL_LIMIT",
          `The run may make ${limit} external call${limit === 1 ? "" : "s"} (max_external_calls); this one was denied.`,
        ),
      );
      this.#fatal ??= { status: "resource_exhausted", error: this.#records[index]!.error! };
      return reply.ok ? reply : { ...reply, fatal: true };
    }
    this.#budgetUsed += 1;

    const entry = this.#options.registry.entry(name);
    if (!entry)
      return this.#fail(
        index,
        started,
        new CallFailure("denied", "UNKNOWN_TOOL", `No tool named '${name}'.`),
      );
    this.#records[index]!.side_effect = entry.tool.capability.side_effect;
    const controller = new AbortController();
    this.#pending.set(index, controller);
    const onRunAbort = () => controller.abort(this.#options.signal.reason);
    this.#options.signal.addEventListener("abort", onRunAbort, { once: true });
    try {
      const value = await this.#perform(
        entry,
        name,
        args,
        kwargs,
        requestText,
        requestDigest,
        controller,
      );
      return this.#succeed(index, started, entry, value);
    } catch (failure) {
      if (failure instanceof CallFailure) return this.#fail(index, started, failure);
      throw failure;
    } finally {
      this.#options.signal.removeEventListener("abort", onRunAbort);
      this.#pending.delete(index);
    }
  }

  /** Runs the checks and the handler; throws a {@link CallFailure} for any refusal. */
  async #perform(
    entry: ToolEntry,
    name: string,
    args: JsonValue[],
    kwargs: JsonObject,
    requestText: string,
    requestDigest: string,
    controller: AbortController,
  ): Promise<unknown> {
    const capability = entry.tool.capability;
    const allowed = this.#options.allowedSideEffects;
    if (allowed && !allowed.has(capability.side_effect)) {
      throw new CallFailure(
        "denied",
        "SIDE_EFFECT_DENIED",
        `'${name}' has side effect '${capability.side_effect}', which this session may not use (allowed: ${[...allowed].join(", ") || "none"}).`,
      );
    }
    const requestBytes = ENCODER.encode(requestText).byteLength;
    if (requestBytes > capability.limits.max_request_bytes) {
      throw new CallFailure(
        "denied",
        "REQUEST_TOO_LARGE",
        `The request is ${requestBytes} bytes; '${name}' takes at most ${capability.limits.max_request_bytes} (max_request_bytes).`,
      );
    }
    if (!entry.validators.args(args)) {
      throw new CallFailure(
        "error",
        "INVALID_ARGUMENTS",
        `Arguments of '${name}' do not match its input_schema: ${describeSchemaErrors(entry.validators.args.errors)}.`,
      );
    }
    if (!entry.validators.kwargs(kwargs)) {
      throw new CallFailure(
        "error",
        "INVALID_ARGUMENTS",
        `Keyword arguments of '${name}' do not match its kwargs_schema: ${describeSchemaErrors(entry.validators.kwargs.errors)}.`,
      );
    }
    await this.#approve(entry, name, args, kwargs, requestDigest, controller);

    const admitted = entry.limiter.admit();
    if (!admitted.ok) {
      throw new CallFailure(
        "denied",
        "RATE_LIMITED",
        `'${name}' may be called ${capability.limits.rate_per_min} times a minute; retry in ${Math.ceil(admitted.retryAfterMs / 1000)} s.`,
      );
    }
    const timeoutMs = Math.max(
      0,
      Math.min(capability.limits.timeout_ms, this.#deadline - performance.now()),
    );
    const waitStarted = performance.now();
    const release = await entry.limiter.acquire(timeoutMs, controller.signal);
    if (!release) {
      if (controller.signal.aborted)
        throw new CallFailure("error", "RUN_CANCELLED", "The run ended during the call.");
      throw new CallFailure(
        "denied",
        "CONCURRENCY_LIMIT",
        `'${name}' runs at most ${capability.limits.concurrency} calls at once; no slot freed within ${Math.round(timeoutMs)} ms.`,
      );
    }
    return this.#invoke(
      entry,
      name,
      args,
      kwargs,
      controller,
      timeoutMs - (performance.now() - waitStarted),
      release,
    );
  }

  async #approve(
    entry: ToolEntry,
    name: string,
    args: JsonValue[],
    kwargs: JsonObject,
    requestDigest: string,
    controller: AbortController,
  ): Promise<void> {
    const capability = entry.tool.capability;
    const policy = capability.approval_policy;
    if (policy === "none") return;
    let reason = "the tool's approval policy is manual";
    if (entry.rule) {
      const ruled = entry.rule.decide({
        name,
        args,
        kwargs,
        side_effect: capability.side_effect,
        session: {
          id: this.#options.sessionId,
          language: this.#options.session?.language ?? "",
          runtime: this.#options.session?.runtime ?? "",
        },
      });
      if (ruled.decision === "approve") return;
      if (ruled.decision === "deny") {
        throw new CallFailure(
          "denied",
          "APPROVAL_DENIED",
          `The approval rule of '${name}' denied the call.`,
        );
      }
      reason = ruled.reason;
    }
    const broker = this.#options.approvals;
    if (!broker) {
      throw new CallFailure(
        "denied",
        "APPROVAL_DENIED",
        `'${name}' needs a person's approval, and this server takes none.`,
      );
    }
    const waitStarted = performance.now();
    const decision = await broker.request(
      {
        runId: this.#options.runId,
        sessionId: this.#options.sessionId,
        name,
        args,
        kwargs,
        requestDigest,
        sideEffect: capability.side_effect,
        reason,
      },
      controller.signal,
    );
    // Waiting for a person does not count toward the run's wall time.
    this.#deadline += performance.now() - waitStarted;
    switch (decision.status) {
      case "approved":
        return;
      case "expired":
        throw new CallFailure(
          "denied",
          "APPROVAL_EXPIRED",
          `No one decided on the call to '${name}' in time.`,
        );
      case "cancelled":
        throw new CallFailure(
          "error",
          "RUN_CANCELLED",
          "The run ended while the call waited for approval.",
        );
      default:
        throw new CallFailure(
          "denied",
          "APPROVAL_DENIED",
          `The call to '${name}' was denied: ${decision.reason}`,
        );
    }
  }

  async #invoke(
    entry: ToolEntry,
    name: string,
    args: JsonValue[],
    kwargs: JsonObject,
    controller: AbortController,
    timeoutMs: number,
    release: () => void,
  ): Promise<unknown> {
    let timer: NodeJS.Timeout | undefined;
    let handlerSettled = false;
    try {
      const timedOut = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), Math.max(0, timeoutMs));
      });
      const aborted = new Promise<"aborted">((resolve) => {
        if (controller.signal.aborted) resolve("aborted");
        controller.signal.addEventListener("abort", () => resolve("aborted"), { once: true });
      });
      const handled = entry.tool
        .call({
          name,
          args,
          kwargs,
          session_id: this.#options.sessionId,
          run_id: this.#options.runId,
          signal: controller.signal,
        })
        .then(
          (value) => ({ value }),
          (error: unknown) => ({ error }),
        );
      // The concurrency slot is held while the handler runs, even past the call's timeout
      // (it still loads whatever the tool talks to) — but not forever: a handler that ignores
      // its abort signal gets one more timeout_ms.
      void handled.then(() => {
        handlerSettled = true;
        release();
      });
      const outcome = await Promise.race([handled, timedOut, aborted]);
      if (outcome === "timeout") {
        controller.abort(new Error("tool call timed out"));
        throw new CallFailure(
          "timeout",
          "TOOL_TIMEOUT",
          `'${name}' did not answer within ${Math.round(Math.max(0, timeoutMs))} ms.`,
        );
      }
      if (outcome === "aborted")
        throw new CallFailure("error", "RUN_CANCELLED", "The run ended during the call.");
      if ("error" in outcome) {
        const error = outcome.error;
        if (error instanceof ToolError) throw new CallFailure("error", error.code, error.message);
        const message = error instanceof Error ? error.message : String(error);
        throw new CallFailure("error", "TOOL_ERROR", `'${name}' failed: ${message}`);
      }
      return outcome.value ?? null;
    } finally {
      clearTimeout(timer);
      if (!handlerSettled) setTimeout(release, entry.tool.capability.limits.timeout_ms).unref();
    }
  }

  /**
   * Ends the gateway with its run: calls still in flight (or waiting for approval) are
   * aborted and recorded as `error` / `RUN_CANCELLED`; later calls are denied.
   */
  settle(): void {
    this.#settled = true;
    for (const [index, controller] of this.#pending) {
      controller.abort(new Error("run ended"));
      const record = this.#records[index]!;
      if (record.status === "approval_pending") {
        record.status = "error";
        record.error = errorObject("RUN_CANCELLED", "The run ended before the call finished.");
      }
    }
    this.#pending.clear();
  }

  #open(name: string, requestDigest: string): number {
    // Placeholder until the outcome is known; "approval_pending" doubles as "in flight".
    return (
      this.#records.push({
        name: String(name),
        side_effect: "none",
        duration_ms: 0,
        status: "approval_pending",
        request_digest: requestDigest,
        response_digest: null,
        error: null,
      }) - 1
    );
  }

  #succeed(index: number, started: number, entry: ToolEntry, value: unknown): ToolCallReply {
    const capability = entry.tool.capability;
    const name = capability.name;
    let valueJson: string | undefined;
    try {
      valueJson = JSON.stringify(value);
    } catch {
      valueJson = undefined;
    }
    if (valueJson === undefined) {
      return this.#fail(
        index,
        started,
        new CallFailure(
          "error",
          "INVALID_TOOL_OUTPUT",
          `'${name}' returned something JSON cannot hold.`,
        ),
      );
    }
    const max = capability.limits.max_response_bytes;
    const bytes = ENCODER.encode(valueJson).byteLength;
    if (bytes > max) {
      return this.#fail(
        index,
        started,
        new CallFailure(
          "error",
          "RESPONSE_TOO_LARGE",
          `'${name}' returned ${bytes} bytes; it may return at most ${max} (max_response_bytes).`,
        ),
      );
    }
    const validate = entry.validators.output;
    if (!validate(JSON.parse(valueJson))) {
      return this.#fail(
        index,
        started,
        new CallFailure(
          "error",
          "INVALID_TOOL_OUTPUT",
          `'${name}' returned a value that does not match its output_schema: ${describeSchemaErrors(validate.errors)}.`,
        ),
      );
    }
    const record = this.#records[index]!;
    record.status = "ok";
    record.duration_ms = elapsedMs(started);
    record.response_digest = digestJsonText(valueJson);
    return { ok: true, valueJson };
  }

  #fail(index: number, started: number, failure: CallFailure): ToolCallReply {
    const record = this.#records[index]!;
    record.status = failure.status;
    record.duration_ms = elapsedMs(started);
    record.error = errorObject(failure.code, failure.message);
    return {
      ok: false,
      status: failure.status,
      code: failure.code,
      message: failure.message,
      fatal: false,
    };
  }
}

function elapsedMs(started: number): number {
  return Math.min(4_294_967_295, Math.round(performance.now() - started));
}
