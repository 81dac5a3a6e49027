/**
 * Pieces of run outcomes every backend builds the same way: the error diagnostic that repeats
 * an outcome's error, the `RESULT_NOT_JSON` and `SESSION_RESET` diagnostics, and empty and
 * `validation_error` outcomes.
 *
 * @module
 */
import type { Diagnostic, ErrorObject, RunStatus } from "../contract/types.ts";
import type { RuntimeRunOutcome } from "./interface.ts";

/** The error diagnostic that repeats an outcome's (or RunResult's) error. */
export function errorDiagnostic(error: ErrorObject): Diagnostic {
  return {
    severity: "error",
    code: error.code,
    message: error.message,
    hint: error.hint,
    span: error.span,
  };
}

/** The warning that a result held what JSON cannot, listing what was converted. */
export function resultNotJsonDiagnostic(issues: readonly string[]): Diagnostic {
  return {
    severity: "warning",
    code: "RESULT_NOT_JSON",
    message: `The result held what JSON cannot (${issues.join("; ")}); those parts are given as strings or arrays.`,
    hint: null,
    span: null,
  };
}

/** The info diagnostic of a reset session. */
export function sessionResetDiagnostic(): Diagnostic {
  return {
    severity: "info",
    code: "SESSION_RESET",
    message: "The session's state was discarded; its next run starts empty.",
    hint: null,
    span: null,
  };
}

/** An outcome with nothing in it but its status. */
export function emptyOutcome(status: RunStatus): RuntimeRunOutcome {
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

/** A `validation_error` outcome for `error`. */
export function validationOutcome(error: ErrorObject): RuntimeRunOutcome {
  return { ...emptyOutcome("validation_error"), error, diagnostics: [errorDiagnostic(error)] };
}
