/**
 * From what a child reports (./protocol.ts `RunReport`) to the run's outcome: status, error
 * code and span, diagnostics, capped output. The child reports facts; every decision a user
 * sees is made here, in the server.
 *
 * @module
 */
import {
  type Diagnostic,
  type ErrorObject,
  errorObject,
  type JsonValue,
  MAX_RECORDED_CLOCK_READS,
  OutputCapture,
  type RunStatus,
  type RuntimeRunOutcome,
  type RuntimeRunRequest,
  type SessionLimits,
  span,
  utf8Length,
} from "../../src/index.ts";
import type { ClockRecord } from "./pinned.ts";
import type { GuestError, RunReport } from "./protocol.ts";

/** Largest result accepted, in characters of JSON text. */
const MAX_RESULT_CHARS = 16 * 1_048_576;

/**
 * A run's stdout and stderr as the server keeps them: what the child sends while the guest
 * prints ("output" messages), capped at `max_stdout_bytes` and passed on to the run's
 * `onOutput` as it arrives — the same text the outcome carries at the end.
 */
export class RunOutput {
  readonly stdout: OutputCapture;
  readonly stderr: OutputCapture;
  readonly #capBytes: number;
  readonly #received = { 1: 0, 2: 0 };
  readonly #onOutput: RuntimeRunRequest["onOutput"];

  constructor(limits: SessionLimits, onOutput?: RuntimeRunRequest["onOutput"]) {
    this.#capBytes = limits.max_stdout_bytes;
    this.stdout = new OutputCapture(limits.max_stdout_bytes);
    this.stderr = new OutputCapture(limits.max_stdout_bytes);
    this.#onOutput = onOutput;
  }

  /**
   * Output the child sent. Answers false when the child sent more than the cap of that
   * stream (it cuts at the cap itself): a protocol violation.
   */
  receive(stream: 1 | 2, text: string): boolean {
    this.#received[stream] += utf8Length(text);
    if (this.#received[stream] > this.#capBytes) return false;
    this.write(stream === 2 ? "stderr" : "stdout", text);
    return true;
  }

  /** Appends text (the server's own, e.g. a traceback) and streams what the cap keeps. */
  write(stream: "stdout" | "stderr", text: string): void {
    const kept = (stream === "stderr" ? this.stderr : this.stdout).write(text);
    if (kept === "" || !this.#onOutput) return;
    try {
      this.#onOutput(stream, kept);
    } catch {
      // A listener's failure must not end the run.
    }
  }
}

/**
 * The clock record of a run as the outcome reports it: at most `MAX_RECORDED_CLOCK_READS`
 * values, and incomplete when a replayed run answered other values than it was given.
 */
export function clockOutcome(record: ClockRecord, replay: readonly number[] | null): ClockRecord {
  let complete = record.complete;
  let values = record.values;
  if (values.length > MAX_RECORDED_CLOCK_READS) {
    values = values.slice(0, MAX_RECORDED_CLOCK_READS);
    complete = false;
  }
  if (replay) {
    const shared = Math.min(values.length, replay.length);
    for (let i = 0; i < shared; i++) if (values[i] !== replay[i]) complete = false;
  }
  return { values, complete };
}

/** Builds the outcome of a run from its report and the output streamed before it. */
export function reportToOutcome(
  report: RunReport,
  limits: SessionLimits,
  output: RunOutput,
  replay: readonly number[] | null,
): RuntimeRunOutcome {
  const { stdout, stderr } = output;
  stdout.countDropped(report.stdoutDroppedBytes);
  stderr.countDropped(report.stderrDroppedBytes);
  const extra: Diagnostic[] = [];
  let status: RunStatus;
  let error: ErrorObject | null = null;
  let result: JsonValue | null = null;
  const reset = report.reset || report.memoryExhausted;
  const resetNote = reset ? "; the session was reset" : "";

  const stopped = report.memoryExhausted ? "memory" : report.stop;
  if (stopped) {
    [status, error] = stopOutcome(stopped, limits, resetNote);
  } else if (report.end === "ok") {
    status = "ok";
    result = parseResult(report, extra);
  } else if (report.end === "syntax_error") {
    status = "validation_error";
    error = syntaxError(report.error);
  } else if (report.end === "exception") {
    const guest = report.error;
    output.write("stderr", guest?.traceback ?? "");
    [status, error] = exceptionOutcome(guest, limits);
  } else if (report.stackOverflow) {
    status = "resource_exhausted";
    error = errorObject(
      "STACK_LIMIT",
      "C-level recursion overflowed the interpreter's native stack; the session was reset.",
      { hint: "Nest data and calls less deeply." },
    );
  } else {
    status = "interrupted";
    error = errorObject(
      "ENGINE_CRASHED",
      `The Pyodide interpreter under this run failed (${report.detail || "no detail"}); the session was reset.`,
    );
  }

  const diagnostics: Diagnostic[] = [];
  if (error) {
    diagnostics.push({
      severity: "error",
      code: error.code,
      message: error.message,
      hint: error.hint,
      span: error.span,
    });
  }
  diagnostics.push(...extra);
  for (const [capture, stream] of [
    [stdout, "stdout"],
    [stderr, "stderr"],
  ] as const) {
    const truncated = capture.truncationDiagnostic(stream);
    if (truncated) diagnostics.push(truncated);
  }
  if (reset) diagnostics.push(resetDiagnostic());
  return {
    status,
    result,
    stdout: stdout.text,
    stderr: stderr.text,
    diagnostics,
    error,
    memoryPeakBytes: report.memoryBytes,
    instructions: 0,
    cpuMs: report.cpuMs,
    sessionReset: reset,
    clock: clockOutcome(report.clock, replay),
  };
}

/** The info diagnostic of a run after which the session starts empty. */
export function resetDiagnostic(): Diagnostic {
  return {
    severity: "info",
    code: "SESSION_RESET",
    message: "The session's interpreter was discarded; its next run starts from an empty session.",
    hint: "Values from earlier runs are gone; recreate them.",
    span: null,
  };
}

function stopOutcome(
  reason: NonNullable<RunReport["stop"]>,
  limits: SessionLimits,
  resetNote: string,
): [RunStatus, ErrorObject] {
  switch (reason) {
    case "memory":
      return [
        "resource_exhausted",
        errorObject(
          "MEMORY_LIMIT",
          `The run tried to use more than memory_mb (${limits.memory_mb} MiB)${resetNote}.`,
          { hint: "Hold less data at once, or raise limits.memory_mb." },
        ),
      ];
    case "process_memory":
      return [
        "resource_exhausted",
        errorObject(
          "MEMORY_LIMIT",
          `The session's process grew far past memory_mb (${limits.memory_mb} MiB) outside Python's heap${resetNote}.`,
        ),
      ];
    case "cpu":
      return [
        "timeout",
        errorObject(
          "CPU_TIME_LIMIT",
          `The run used more than cpu_ms (${limits.cpu_ms} ms) of CPU time${resetNote}.`,
        ),
      ];
    case "process_cpu":
      return [
        "timeout",
        errorObject(
          "CPU_TIME_LIMIT",
          `Threads other than the interpreter's used more than cpu_ms (${limits.cpu_ms} ms) of CPU time${resetNote}.`,
        ),
      ];
    case "wall":
      return [
        "timeout",
        errorObject(
          "WALL_TIME_LIMIT",
          `The run took longer than wall_ms (${limits.wall_ms} ms)${resetNote}.`,
        ),
      ];
    case "cancelled":
      return ["cancelled", errorObject("RUN_CANCELLED", `The run was cancelled${resetNote}.`)];
    default:
      return [
        "resource_exhausted",
        errorObject(
          "EXTERNAL_CALL_LIMIT",
          `The run made more than max_external_calls (${limits.max_external_calls}) tool calls${resetNote}.`,
        ),
      ];
  }
}

function guestSpan(guest: GuestError | null) {
  if (!guest?.line) return null;
  return span(guest.line, guest.column ?? 1);
}

function headline(guest: GuestError): string {
  return guest.message ? `${guest.type}: ${guest.message}` : guest.type;
}

function syntaxError(guest: GuestError | null): ErrorObject {
  if (!guest) return errorObject("SYNTAX_ERROR", "SyntaxError");
  return errorObject("SYNTAX_ERROR", headline(guest), { span: guestSpan(guest) });
}

function exceptionOutcome(
  guest: GuestError | null,
  limits: SessionLimits,
): [RunStatus, ErrorObject] {
  if (!guest)
    return ["runtime_error", errorObject("RUNTIME_ERROR", "The cell raised an exception.")];
  const where = guestSpan(guest);
  if (guest.type === "RecursionError") {
    return [
      "resource_exhausted",
      errorObject(
        "STACK_LIMIT",
        `${headline(guest)} (max_stack_depth is ${limits.max_stack_depth} frames).`,
        { span: where, hint: "Recurse less deeply, or raise limits.max_stack_depth." },
      ),
    ];
  }
  return [
    "runtime_error",
    errorObject(guest.toolCode ?? "RUNTIME_ERROR", headline(guest), { span: where }),
  ];
}

function parseResult(report: RunReport, extra: Diagnostic[]): JsonValue | null {
  const text = report.resultJson;
  if (text === null) return null;
  if (text.length > MAX_RESULT_CHARS) {
    extra.push({
      severity: "warning",
      code: "RESULT_NOT_JSON",
      message: `The result is larger than ${MAX_RESULT_CHARS} characters of JSON and was dropped.`,
      hint: "Return a smaller value, or store large data with a tool.",
      span: null,
    });
    return null;
  }
  let result: JsonValue;
  try {
    result = JSON.parse(text) as JsonValue;
  } catch {
    extra.push(resultDiagnostic(["output the interpreter could not encode"]));
    return null;
  }
  if (report.resultIssues.length > 0) extra.push(resultDiagnostic(report.resultIssues));
  return result;
}

function resultDiagnostic(issues: string[]): Diagnostic {
  return {
    severity: "warning",
    code: "RESULT_NOT_JSON",
    message: `The result held what JSON cannot (${issues.join("; ")}); those parts were converted.`,
    hint: null,
    span: null,
  };
}
