/**
 * Host tools: `Capability` builders, `RegisteredTool` and `ToolRegistry` (seed 004).
 *
 * A capability author writes a handler that takes a {@link ToolCallContext} and returns a
 * JSON value (or a promise of one), wraps it with {@link createSyncTool} or
 * {@link createAsyncTool}, and registers it. Guest code then calls it by name; every call
 * goes through the run's {@link ToolGateway} first (see ./gateway.ts).
 *
 * @module
 */
import type { ValidateFunction } from "ajv/dist/2020.js";
import { isPythonIdentifier } from "../contract/ids.ts";
import {
  type ApprovalPolicy,
  type Capability,
  type CapabilityLimits,
  DEFAULT_CAPABILITY_LIMITS,
  type JsonValue,
  SIDE_EFFECTS,
  type SideEffect,
  type ToolCallContext,
} from "../contract/types.ts";
import { SandboxError } from "../errors.ts";
import { compileSchema } from "../json-schema.ts";
import { type ApprovalRule, compileApprovalRule } from "./approval-rule.ts";
import { ToolLimiter } from "./limiter.ts";

/**
 * An error a tool handler throws to fail a call with a code of its own (seed: `ToolError`).
 * The guest sees an error carrying `code` and `message`; the call is recorded with status
 * `"error"`. `code` should be UPPER_SNAKE.
 */
export class ToolError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = "ToolError";
    this.code = code;
  }
}

/** A handler answering synchronously (seed: the closure of `RegisteredTool::sync`). */
export type SyncToolHandler = (context: ToolCallContext) => JsonValue | undefined;

/** A handler answering with a promise (seed: the closure of `RegisteredTool::asynchronous`). */
export type AsyncToolHandler = (context: ToolCallContext) => Promise<JsonValue | undefined>;

/** The parts of a {@link Capability} an author may leave out; defaults as `Capability::new`. */
export interface CapabilityInit {
  name: string;
  description: string;
  side_effect?: SideEffect;
  input_schema?: JsonValue;
  output_schema?: JsonValue;
  kwargs_schema?: JsonValue;
  limits?: Partial<CapabilityLimits>;
  approval_policy?: ApprovalPolicy;
  idempotent?: boolean;
}

/**
 * Builds a complete {@link Capability} (seed: `Capability::new` plus overrides). Defaults:
 * `side_effect` `"none"`, `input_schema` `{"type": "array"}`, `output_schema` `{}`,
 * `limits` {@link DEFAULT_CAPABILITY_LIMITS}, `approval_policy` `"none"`, `idempotent` true.
 */
export function defineCapability(init: CapabilityInit): Capability {
  const capability: Capability = {
    name: init.name,
    description: init.description,
    input_schema: init.input_schema ?? { type: "array" },
    output_schema: init.output_schema ?? {},
    side_effect: init.side_effect ?? "none",
    limits: { ...DEFAULT_CAPABILITY_LIMITS, ...init.limits },
    approval_policy: init.approval_policy ?? "none",
    idempotent: init.idempotent ?? true,
  };
  if (init.kwargs_schema !== undefined) capability.kwargs_schema = init.kwargs_schema;
  return capability;
}

/** Compiled validators of a capability's schemas. */
export interface ToolValidators {
  readonly args: ValidateFunction;
  readonly kwargs: ValidateFunction;
  readonly output: ValidateFunction;
}

/**
 * A tool as the registry holds it (seed: `RegisteredTool`): its capability, whether its
 * handler is asynchronous, and `call`, which always answers with a promise.
 */
export interface RegisteredTool {
  readonly capability: Capability;
  /** Seed: `async_mode`. */
  readonly asyncMode: boolean;
  /** `"remote"` for tools registered over HTTP (an endpoint), else local (default). */
  readonly origin?: "local" | "remote";
  /** Runs the handler. Rejections are the handler's own (a {@link ToolError} or anything else). */
  call(context: ToolCallContext): Promise<JsonValue | undefined>;
}

/** Wraps a synchronous handler (seed: `RegisteredTool::sync`). */
export function createSyncTool(
  capability: Capability | CapabilityInit,
  handler: SyncToolHandler,
): RegisteredTool {
  return {
    capability: completeCapability(capability),
    asyncMode: false,
    call: async (context) => handler(context),
  };
}

/** Wraps an asynchronous handler (seed: `RegisteredTool::asynchronous`). */
export function createAsyncTool(
  capability: Capability | CapabilityInit,
  handler: AsyncToolHandler,
): RegisteredTool {
  return {
    capability: completeCapability(capability),
    asyncMode: true,
    call: (context) => handler(context),
  };
}

function completeCapability(capability: Capability | CapabilityInit): Capability {
  return defineCapability(capability);
}

const NO_KWARGS_SCHEMA = { type: "object", maxProperties: 0 } as const;

/** Everything the registry keeps for one tool. */
export interface ToolEntry {
  readonly tool: RegisteredTool;
  readonly validators: ToolValidators;
  /** Concurrency and rate state, shared by every session's calls. */
  readonly limiter: ToolLimiter;
  /** The compiled rule of an `{"auto": {"rule"}}` approval policy, else null. */
  readonly rule: ApprovalRule | null;
}

/**
 * Tools by name (seed: `ToolRegistry`, a `BTreeMap`: listing is in name order).
 * Registering a name that exists replaces the tool, as the seed's map insert does.
 * `version` increases on every change so backends can refresh what guests see.
 */
export class ToolRegistry {
  readonly #tools = new Map<string, ToolEntry>();
  #version = 0;

  /**
   * Adds or replaces a tool (seed: `register`).
   * @throws SandboxError `INVALID_TOOL_NAME` when the name is not a Python identifier;
   *   `INVALID_CAPABILITY` when a schema or approval rule does not compile or a field is
   *   malformed.
   */
  register(tool: RegisteredTool): void {
    const capability = tool.capability;
    if (!isPythonIdentifier(capability.name)) {
      throw new SandboxError(
        "INVALID_TOOL_NAME",
        `Capability name '${String(capability.name)}' is not a valid Python identifier.`,
      );
    }
    checkCapabilityFields(capability);
    const validators = compileValidators(capability);
    const policy = capability.approval_policy;
    const rule = typeof policy === "object" ? compileApprovalRule(policy.auto.rule) : null;
    this.#tools.set(capability.name, {
      tool,
      validators,
      limiter: new ToolLimiter(capability.limits),
      rule,
    });
    this.#version += 1;
  }

  /** Removes a tool; answers whether it was there. */
  unregister(name: string): boolean {
    const removed = this.#tools.delete(name);
    if (removed) this.#version += 1;
    return removed;
  }

  /** The tool with this name (seed: `get`). */
  get(name: string): RegisteredTool | undefined {
    return this.#tools.get(name)?.tool;
  }

  /** The compiled validators of the tool with this name. */
  validators(name: string): ToolValidators | undefined {
    return this.#tools.get(name)?.validators;
  }

  /** Everything kept for the tool with this name. */
  entry(name: string): ToolEntry | undefined {
    return this.#tools.get(name);
  }

  /** Whether a tool has this name (seed: `contains`). */
  contains(name: string): boolean {
    return this.#tools.has(name);
  }

  /** Every capability, by name (seed: `capabilities`). */
  capabilities(): Capability[] {
    return this.names().map((name) => this.#tools.get(name)!.tool.capability);
  }

  /** Every tool name, sorted (seed: `names`). */
  names(): string[] {
    return [...this.#tools.keys()].sort();
  }

  /** Increases on every register/unregister. */
  get version(): number {
    return this.#version;
  }
}

function checkCapabilityFields(capability: Capability): void {
  const problems: string[] = [];
  if (typeof capability.description !== "string") problems.push("description must be a string");
  if (!SIDE_EFFECTS.includes(capability.side_effect)) problems.push("side_effect is unknown");
  const limits = capability.limits;
  for (const key of ["timeout_ms", "max_request_bytes", "max_response_bytes", "concurrency"]) {
    const value = (limits as unknown as Record<string, unknown>)[key];
    if (!Number.isInteger(value) || (value as number) < 1) {
      problems.push(`limits.${key} must be a positive integer`);
    }
  }
  if (
    limits.rate_per_min !== null &&
    (!Number.isInteger(limits.rate_per_min) || limits.rate_per_min < 1)
  ) {
    problems.push("limits.rate_per_min must be null or a positive integer");
  }
  const policy = capability.approval_policy;
  const policyOk =
    policy === "none" ||
    policy === "manual" ||
    (typeof policy === "object" &&
      policy !== null &&
      typeof (policy as { auto?: { rule?: unknown } }).auto?.rule === "string");
  if (!policyOk) problems.push('approval_policy must be "none", "manual" or {"auto": {"rule"}}');
  if (problems.length > 0) {
    throw new SandboxError(
      "INVALID_CAPABILITY",
      `Capability '${capability.name}': ${problems.join("; ")}.`,
    );
  }
}

function compileValidators(capability: Capability): ToolValidators {
  const compile = (which: string, schema: unknown) => {
    try {
      return compileSchema(schema);
    } catch (error) {
      throw new SandboxError(
        "INVALID_CAPABILITY",
        `Capability '${capability.name}': ${which} does not compile: ${(error as Error).message}`,
      );
    }
  };
  return {
    args: compile("input_schema", capability.input_schema),
    kwargs: compile("kwargs_schema", capability.kwargs_schema ?? NO_KWARGS_SCHEMA),
    output: compile("output_schema", capability.output_schema),
  };
}
