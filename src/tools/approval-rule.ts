/**
 * `ApprovalPolicy::Auto { rule }`: a rule decides, for each call of a tool, whether it is
 * approved, denied, or escalated to a person (as `"manual"`).
 *
 * The rule language is CEL, Google's Common Expression Language (used by Kubernetes, Envoy and
 * Cloud IAM conditions): side-effect free, not Turing complete, always terminating. It sees:
 *
 * | variable | type | |
 * |---|---|---|
 * | `name` | string | the tool |
 * | `args` | list | positional arguments |
 * | `kwargs` | map | keyword arguments |
 * | `side_effect` | string | the tool's side-effect class |
 * | `session` | map | `id`, `language`, `runtime` |
 *
 * It evaluates to `true` (approve), `false` (deny), or one of the strings `"approve"`,
 * `"deny"`, `"manual"`. A rule that fails at evaluation (an index out of range, a wrong type)
 * escalates to `"manual"`: a person decides when the rule cannot.
 *
 * `matches()` is refused: it runs a JavaScript regular expression over guest-controlled text
 * on the server's thread, and one pattern can take exponential time (measured: 40 s for
 * `"a…a!".matches("(a+)+$")`). Use `startsWith`, `endsWith`, `contains`, `in`, `size`.
 *
 * Source: @marcbachmann/cel-js (the CEL implementation).
 * @module
 */
import { Environment } from "@marcbachmann/cel-js";
import type { JsonObject, JsonValue, SideEffect } from "../contract/types.ts";
import { SandboxError } from "../errors.ts";

/** What a rule decides. */
export type RuleDecision = "approve" | "deny" | "manual";

/** The call a rule looks at. */
export interface RuleInput {
  name: string;
  args: JsonValue[];
  kwargs: JsonObject;
  side_effect: SideEffect;
  session: { id: string; language: string; runtime: string };
}

/** A compiled rule. */
export interface ApprovalRule {
  readonly source: string;
  /** Decides for one call; never throws (a failing rule answers `"manual"` with the reason). */
  decide(input: RuleInput): { decision: RuleDecision; reason: string };
}

const environment = new Environment({
  limits: {
    maxAstNodes: 2_000,
    maxDepth: 64,
    maxListElements: 256,
    maxMapEntries: 256,
    maxCallArguments: 8,
  },
})
  .registerVariable("name", "string")
  .registerVariable("args", "list")
  .registerVariable("kwargs", "map")
  .registerVariable("side_effect", "string")
  .registerVariable("session", "map");

const REFUSED_FUNCTIONS = new Set(["matches"]);

interface AstNode {
  op: string;
  args: unknown;
}

function findRefusedCall(node: unknown, depth = 0): string | null {
  if (depth > 200 || node === null || typeof node !== "object") return null;
  if (Array.isArray(node)) {
    for (const item of node) {
      const found = findRefusedCall(item, depth + 1);
      if (found) return found;
    }
    return null;
  }
  const ast = node as AstNode;
  if ((ast.op === "call" || ast.op === "rcall") && Array.isArray(ast.args)) {
    const callee = ast.args[0];
    if (typeof callee === "string" && REFUSED_FUNCTIONS.has(callee)) return callee;
  }
  return findRefusedCall(ast.args, depth + 1);
}

/**
 * Compiles a rule.
 * @throws SandboxError `INVALID_CAPABILITY` when it does not parse or uses a refused function.
 */
export function compileApprovalRule(source: string): ApprovalRule {
  let program: ReturnType<typeof environment.parse>;
  try {
    program = environment.parse(source);
  } catch (error) {
    throw new SandboxError(
      "INVALID_CAPABILITY",
      `The approval rule does not parse: ${firstLine(error)}`,
    );
  }
  const refused = findRefusedCall((program as unknown as { ast: unknown }).ast);
  if (refused) {
    throw new SandboxError(
      "INVALID_CAPABILITY",
      `The approval rule calls ${refused}(), which is not allowed: a regular expression over call arguments can take exponential time.`,
      { hint: "Use startsWith, endsWith, contains, in or size." },
    );
  }
  return {
    source,
    decide(input) {
      let value: unknown;
      try {
        value = program({ ...input });
      } catch (error) {
        return { decision: "manual", reason: `the rule could not decide: ${firstLine(error)}` };
      }
      if (value === true || value === "approve")
        return { decision: "approve", reason: "approved by rule" };
      if (value === false || value === "deny")
        return { decision: "deny", reason: "denied by rule" };
      if (value === "manual") return { decision: "manual", reason: "the rule asked for a person" };
      return { decision: "manual", reason: `the rule answered ${String(value)}, not a decision` };
    },
  };
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0] ?? "";
}
