/**
 * The TypeScript type-check of `validate_only` runs: what the checker needs to know of a
 * session's earlier runs (the globals they declared and the inputs they bound), and checking a
 * cell against them and the tools' stubs (../js/typecheck.ts does the checking).
 *
 * @module
 */
import type { Diagnostic } from "../contract/types.ts";
import { errorObject } from "../errors.ts";
import { declaredGlobals } from "../js/cell.ts";
import { typecheckCell, typeOfJson } from "../js/typecheck.ts";
import type { RuntimeRunOutcome } from "../runtime/interface.ts";
import type { ToolRegistry } from "../tools/registry.ts";
import type { StubCache } from "../tools/stubs.ts";
import type { RunState } from "./state.ts";

/** Keeps what the type-checker needs to know of a run that executed. */
export function rememberCell(
  run: Pick<RunState, "session" | "language" | "code" | "inputs">,
): void {
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

/**
 * Type-checks a TypeScript cell for validate_only; type errors make it a validation_error
 * (`TYPE_ERROR`). When the checker cannot run, the outcome is kept with a
 * `TYPECHECK_UNAVAILABLE` warning.
 */
export async function typecheckRun(
  run: RunState,
  outcome: RuntimeRunOutcome,
  tools: ToolRegistry,
  stubs: StubCache,
): Promise<RuntimeRunOutcome> {
  const toolNames = new Set(tools.names());
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
      stubs: await stubs.get("typescript"),
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
