/**
 * The per-run path of every tool call from guest code to a handler and back.
 *
 * In order: the call's JSON is read → the request digest is taken → the call budget
 * (`max_external_calls`) → the name → `max_request_bytes` → `input_schema` / kwargs schema →
 * the handler, cut off at `timeout_ms` or the run's deadline → the value must be JSON within
 * `max_response_bytes` and match `output_schema` → response digest → an
 * {@link ExternalCallRecord} in call order. Whatever happens, the guest gets a
 * {@link ToolCallReply} and the record says what happened; the host never throws at the guest.
 *
 * A denied call past the budget also sets {@link ToolGateway.fatal}: the backend stops the
 * guest and the run ends `resource_exhausted`.
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
} from "../contract/types.ts";
import { digestBytes, digestJsonText } from "../digest.ts";
import { type ErrorCode, errorObject } from "../errors.ts";
import { describeSchemaErrors } from "../json-schema.ts";
import type { ToolBridge, ToolCallReply } from "../runtime/interface.ts";
import { ToolError, type ToolRegistry } from "./registry.ts";

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
}

/** Why a call ended the run, when one did. */
export interface FatalCall {
  status: RunStatus;
  error: ErrorObject;
}

const ENCODER = new TextEncoder();

/**
 * One run's tool gateway. Backends see it as a {@link ToolBridge}; the session manager reads
 * {@link records} and {@link fatal} when the run ends, after calling {@link settle}.
 */
export class ToolGateway implements ToolBridge {
  readonly #options: ToolGatewayOptions;
  readonly #records: ExternalCallRecord[] = [];
  readonly #pending = new Map<number, AbortController>();
  #budgetUsed = 0;
  #fatal: FatalCall | null = null;
  #settled = false;

  constructor(options: ToolGatewayOptions) {
    this.#options = options;
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
   * spelling of the guest's numbers is kept.
   */
  async call(name: string, argsJson: string, kwargsJson: string): Promise<ToolCallReply> {
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
      return this.#finish(index, started, "error", "INVALID_ARGUMENTS", (error as Error).message);
    }
    const index = this.#open(name, requestDigest);
    if (this.#settled) {
      return this.#finish(index, started, "denied", "RUN_CANCELLED", "The run has ended.");
    }
    const limit = this.#options.maxExternalCalls;
    if (this.#budgetUsed >= limit) {
      const reply = this.#finish(
        index,
        started,
        "denied",
        "EXTERNAL_CALL_LIMIT",
        `The run may make ${limit} external call${limit === 1 ? "" : "s"} (max_external_calls); this one was denied.`,
      );
      this.#fatal ??= {
        status: "resource_exhausted",
        error: this.#records[index]!.error!,
      };
      return reply.ok ? reply : { ...reply, fatal: true };
    }
    this.#budgetUsed += 1;

    const registry = this.#options.registry;
    const tool = registry.get(name);
    const validators = registry.validators(name);
    if (!tool || !validators) {
      return this.#finish(index, started, "denied", "UNKNOWN_TOOL", `No tool named '${name}'.`);
    }
    const capability = tool.capability;
    this.#records[index]!.side_effect = capability.side_effect;
    const requestBytes = ENCODER.encode(requestText).byteLength;
    if (requestBytes > capability.limits.max_request_bytes) {
      return this.#finish(
        index,
        started,
        "denied",
        "REQUEST_TOO_LARGE",
        `The request is ${requestBytes} bytes; '${name}' takes at most ${capability.limits.max_request_bytes} (max_request_bytes).`,
      );
    }
    if (!validators.args(args)) {
      return this.#finish(
        index,
        started,
        "error",
        "INVALID_ARGUMENTS",
        `Arguments of '${name}' do not match its input_schema: ${describeSchemaErrors(validators.args.errors)}.`,
      );
    }
    if (!validators.kwargs(kwargs)) {
      return this.#finish(
        index,
        started,
        "error",
        "INVALID_ARGUMENTS",
        `Keyword arguments of '${name}' do not match its kwargs_schema: ${describeSchemaErrors(validators.kwargs.errors)}.`,
      );
    }

    const controller = new AbortController();
    this.#pending.set(index, controller);
    const timeoutMs = Math.max(
      0,
      Math.min(capability.limits.timeout_ms, this.#options.deadline - performance.now()),
    );
    let timer: NodeJS.Timeout | undefined;
    const onRunAbort = () => controller.abort(this.#options.signal.reason);
    this.#options.signal.addEventListener("abort", onRunAbort, { once: true });
    try {
      const timedOut = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), timeoutMs);
      });
      const aborted = new Promise<"aborted">((resolve) => {
        if (controller.signal.aborted) resolve("aborted");
        controller.signal.addEventListener("abort", () => resolve("aborted"), { once: true });
      });
      const outcome = await Promise.race([
        tool
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
          ),
        timedOut,
        aborted,
      ]);
      if (outcome === "timeout") {
        controller.abort(new Error("tool call timed out"));
        return this.#finish(
          index,
          started,
          "timeout",
          "TOOL_TIMEOUT",
          `'${name}' did not answer within ${Math.round(timeoutMs)} ms.`,
        );
      }
      if (outcome === "aborted") {
        return this.#finish(
          index,
          started,
          "error",
          "RUN_CANCELLED",
          "The run ended during the call.",
        );
      }
      if ("error" in outcome) {
        const error = outcome.error;
        if (error instanceof ToolError) {
          return this.#finish(index, started, "error", error.code, error.message);
        }
        const message = error instanceof Error ? error.message : String(error);
        return this.#finish(index, started, "error", "TOOL_ERROR", `'${name}' failed: ${message}`);
      }
      return this.#succeed(index, started, name, outcome.value ?? null);
    } finally {
      clearTimeout(timer);
      this.#options.signal.removeEventListener("abort", onRunAbort);
      this.#pending.delete(index);
    }
  }

  /**
   * Ends the gateway with its run: calls still in flight are aborted and recorded as
   * `error` / `RUN_CANCELLED`; later calls are denied.
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

  #succeed(index: number, started: number, name: string, value: unknown): ToolCallReply {
    const registry = this.#options.registry;
    const capability = registry.get(name)?.capability;
    let valueJson: string | undefined;
    try {
      valueJson = JSON.stringify(value);
    } catch {
      valueJson = undefined;
    }
    if (valueJson === undefined) {
      return this.#finish(
        index,
        started,
        "error",
        "INVALID_TOOL_OUTPUT",
        `'${name}' returned something JSON cannot hold.`,
      );
    }
    const max = capability?.limits.max_response_bytes ?? Number.POSITIVE_INFINITY;
    const bytes = ENCODER.encode(valueJson).byteLength;
    if (bytes > max) {
      return this.#finish(
        index,
        started,
        "error",
        "RESPONSE_TOO_LARGE",
        `'${name}' returned ${bytes} bytes; it may return at most ${max} (max_response_bytes).`,
      );
    }
    const validate = registry.validators(name)?.output;
    if (validate && !validate(JSON.parse(valueJson))) {
      return this.#finish(
        index,
        started,
        "error",
        "INVALID_TOOL_OUTPUT",
        `'${name}' returned a value that does not match its output_schema: ${describeSchemaErrors(validate.errors)}.`,
      );
    }
    const record = this.#records[index]!;
    record.status = "ok";
    record.duration_ms = elapsedMs(started);
    record.response_digest = digestJsonText(valueJson);
    return { ok: true, valueJson };
  }

  #finish(
    index: number,
    started: number,
    status: CallStatus,
    code: ErrorCode | string,
    message: string,
  ): ToolCallReply {
    const record = this.#records[index]!;
    record.status = status;
    record.duration_ms = elapsedMs(started);
    record.error = errorObject(code, message);
    return { ok: false, status, code, message, fatal: false };
  }
}

function elapsedMs(started: number): number {
  return Math.min(4_294_967_295, Math.round(performance.now() - started));
}
