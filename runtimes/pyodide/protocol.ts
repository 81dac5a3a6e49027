/**
 * Messages of the Pyodide backend, on its two boundaries:
 *
 * - server ⇄ contained child process ({@link ParentMessage}, {@link ChildMessage}), as JSON
 *   frames over a socket (./frames.ts). The server treats everything a child sends as
 *   untrusted: {@link parseChildMessage} checks every field, and the server's state machine
 *   (./process.ts) refuses messages it does not expect.
 * - the child's supervisor thread ⇄ its interpreter thread ({@link SupervisorMessage},
 *   {@link InterpreterMessage}), over worker-thread message ports.
 *
 * The child reports facts ({@link RunReport}: how the cell ended, what it printed, what the
 * supervisor stopped); the server decides what they mean for the RunResult (./outcome.ts).
 *
 * This module is imported by the child process and its interpreter thread, so it has no
 * run-time imports (types only).
 *
 * @module
 */
import type { SessionLimits, ToolCallReply } from "../../src/index.ts";
import type { ClockRecord, PinningRequest } from "./pinned.ts";

/** Why the supervisor stopped a run. */
export type StopReason =
  /** `cpu_ms` of interpreter-thread CPU time was used. */
  | "cpu"
  /** `wall_ms` passed. */
  | "wall"
  /** The server cancelled the run. */
  | "cancelled"
  /** A tool call past `max_external_calls` was denied. */
  | "fatal"
  /** The WebAssembly memory refused to grow past `memory_mb`. */
  | "memory"
  /** The whole process's resident memory passed its backstop (see docs/limits.md). */
  | "process_memory"
  /** Threads other than the interpreter's burned CPU (something the guest started). */
  | "process_cpu";

/** Every {@link StopReason}. */
export const STOP_REASONS: readonly StopReason[] = [
  "cpu",
  "wall",
  "cancelled",
  "fatal",
  "memory",
  "process_memory",
  "process_cpu",
];

/** How the interpreter ended a cell. */
export type RunEnd =
  /** The cell ran to its end (or, for validate_only, compiled); `resultJson` holds its value. */
  | "ok"
  /** The cell did not compile. */
  | "syntax_error"
  /** The cell raised and did not catch. */
  | "exception"
  /** The interpreter failed (Pyodide fatal error, its thread died, or it was terminated). */
  | "engine_failed";

/** Every {@link RunEnd}. */
export const RUN_ENDS: readonly RunEnd[] = ["ok", "syntax_error", "exception", "engine_failed"];

/** An exception (or syntax error) as the interpreter saw it. Lines and columns are 1-based; columns count code points. */
export interface GuestError {
  /** Exception class name, e.g. `NameError`, `ToolError`. */
  type: string;
  /** `str(exception)`. */
  message: string;
  /** Innermost position in the current cell, or null. */
  line: number | null;
  column: number | null;
  /** Python's traceback, with the sandbox's own frames removed ("" for syntax errors). */
  traceback: string;
  /** For a tool's error: its code (`ToolError.code`), else null. */
  toolCode: string | null;
}

/** What a child reports about one run. */
export interface RunReport {
  end: RunEnd;
  /** JSON text of the converted result, or null (no last expression, or no result). */
  resultJson: string | null;
  /** What the conversion to JSON had to change (a set as an array, a function as its repr…). */
  resultIssues: string[];
  error: GuestError | null;
  /** For `engine_failed`: what failed. */
  detail: string;
  /** Whether Pyodide's failure was a native stack overflow (C-level recursion). */
  stackOverflow: boolean;
  /**
   * UTF-8 bytes cut from each stream by the child. What it kept came before the report, in
   * "output" messages.
   */
  stdoutDroppedBytes: number;
  stderrDroppedBytes: number;
  /** Why the supervisor stopped the run, or null. */
  stop: StopReason | null;
  /** An allocation was refused at `memory_mb`. */
  memoryExhausted: boolean;
  /** Size of the interpreter's WebAssembly memory at the end of the run, in bytes. */
  memoryBytes: number;
  /** CPU time of the interpreter thread during the run, in milliseconds. */
  cpuMs: number;
  /** The interpreter was discarded: the process cannot run this session any more. */
  reset: boolean;
  /** Wall-clock values guest code read, in order (./pinned.ts). */
  clock: ClockRecord;
}

/** A run as it crosses to the child; its seed and clock pin the run (./pinned.ts). */
export interface ChildRunRequest extends PinningRequest {
  code: string;
  /** Filename of the cell in tracebacks, e.g. `<cell-3>`. */
  cellName: string;
  /** Globals to bind, as JSON object text. */
  inputsJson: string;
  limits: SessionLimits;
  validateOnly: boolean;
  /** Tool names, sorted, and the registry version they come from. */
  toolNames: readonly string[];
  toolsVersion: number;
}

/** What a child reports once its interpreter is ready. */
export interface ReadyInfo {
  /** Resident memory of the child process when ready, in bytes. */
  rssBytes: number;
  /** Size of the interpreter's WebAssembly memory, in bytes. */
  wasmBytes: number;
  /** Milliseconds to restore the interpreter from the base image (or to load it cold). */
  loadMs: number;
}

/** How a child loads a session image (server → child, "restore"). */
export interface RestoreRequest {
  /** The encoded image (./image-delta.ts), base64. */
  image: string;
  /** The session's memory_mb, in bytes: a larger image is refused. */
  memoryCapBytes: number;
  /** Time the child gets to load it before giving up (and exiting), in ms. */
  timeoutMs: number;
}

/** Server → child. */
export type ParentMessage =
  | { kind: "run"; run: ChildRunRequest }
  | { kind: "tool-reply"; callId: number; reply: ToolCallReply }
  | { kind: "cancel" }
  /** Make an image of the session (between runs). */
  | { kind: "snapshot"; timeoutMs: number }
  /** Load a session image instead of the base image's interpreter (a fresh process only). */
  | ({ kind: "restore" } & RestoreRequest);

/** What a child answers about a session image it made (./image-delta.ts). */
export interface SessionImageInfo {
  /** The encoded image, base64. */
  base64: string;
  /** Size of the session's WebAssembly memory, and how many of its 4 KiB pages differ from the base image. */
  heapBytes: number;
  changedPages: number;
}

/** Child → server. */
export type ChildMessage =
  | { kind: "ready"; info: ReadyInfo }
  /** Output of the running run the child kept (under `max_stdout_bytes`), as the guest printed it. */
  | { kind: "output"; stream: 1 | 2; text: string }
  | { kind: "tool-call"; callId: number; name: string; argsJson: string; kwargsJson: string }
  | { kind: "done"; report: RunReport }
  | { kind: "image"; base64: string; info: ReadyInfo }
  | { kind: "failed"; message: string }
  | ({ kind: "session-image" } & SessionImageInfo)
  /** No image can be made of this session now; `reason` says why (shown to the user). */
  | { kind: "session-image-refused"; reason: string }
  /** The session image is loaded; the process serves that session. */
  | { kind: "restored"; info: ReadyInfo }
  /** The session image did not load; the child exits. */
  | { kind: "restore-failed"; message: string };

/** How the child process starts (its last command-line argument, as JSON). */
export interface ChildOptions {
  /** `serve`: restore the base image and serve one session. `build`: make the base image and exit. */
  mode: "serve" | "build";
  /** Path of the base image (serve mode). */
  imagePath: string | null;
  /** Python modules imported before the base image is taken (build mode). */
  preloadModules: readonly string[];
  /** Native stack of the interpreter thread, in MiB. */
  interpreterStackMb: number;
  /** C stack (Emscripten shadow stack) CPython may use before RecursionError, in bytes. */
  cStackBytes: number;
  /** V8 old-generation heap cap of the interpreter thread, in MiB. */
  interpreterHeapMb: number;
  /** Time the interpreter gets to stop after an interrupt before its thread is terminated, in ms. */
  interruptGraceMs: number;
  /** Resident memory the process may use beyond its idle size and memory_mb, in MiB (backstop). */
  processMemoryHeadroomMb: number;
}

/** Supervisor → interpreter thread. */
export type SupervisorMessage =
  | { kind: "run"; run: InterpreterRun }
  | { kind: "tool-reply"; callId: number; reply: ToolCallReply }
  | { kind: "stop" }
  | { kind: "snapshot" }
  | { kind: "restore"; snapshot: Uint8Array; filesJson: string; filesBlob: Uint8Array };

/** A run as the interpreter thread gets it. */
export interface InterpreterRun extends ChildRunRequest {
  /** Growth cap of the WebAssembly memory, in bytes. */
  memoryCapBytes: number;
}

/** Interpreter thread → supervisor. */
export type InterpreterMessage =
  | { kind: "ready"; info: Omit<ReadyInfo, "rssBytes"> }
  | { kind: "image"; bytes: Uint8Array; info: Omit<ReadyInfo, "rssBytes"> }
  | { kind: "failed"; message: string }
  /** Output to keep, and UTF-8 bytes the interpreter dropped since its last message (past the cap). */
  | { kind: "output"; stream: 1 | 2; text: string; droppedBytes: number }
  | { kind: "tool-call"; callId: number; name: string; argsJson: string; kwargsJson: string }
  | { kind: "done"; result: InterpreterResult }
  /** Pyodide's memory snapshot of the session and its files (./interpreter-image.ts). */
  | { kind: "session-image"; snapshot: Uint8Array; filesJson: string; filesBlob: Uint8Array }
  | { kind: "session-image-refused"; reason: string }
  | { kind: "restored"; info: Omit<ReadyInfo, "rssBytes"> }
  | { kind: "restore-failed"; message: string };

/** What the interpreter thread reports about a run (the supervisor adds output, limits and CPU). */
export type InterpreterResult = Pick<
  RunReport,
  | "end"
  | "resultJson"
  | "resultIssues"
  | "error"
  | "detail"
  | "stackOverflow"
  | "memoryBytes"
  | "clock"
>;

/** Layout of the shared control words between supervisor and interpreter (Int32 indices). */
export const CONTROL = {
  /** Bumped (and notified) by the supervisor after every message it posts to the interpreter. */
  wake: 0,
  /** Set to 1 by the interpreter when an allocation was refused at the memory cap. */
  memoryExhausted: 1,
  /** Number of Int32 slots. */
  length: 2,
} as const;

/** The prelude's Python modules, in load order, and their files (relative to this module). */
export const PRELUDE_MODULES: readonly (readonly [module: string, file: string])[] = [
  ["_sandbox_results", "./prelude_results.py"],
  ["_sandbox", "./prelude.py"],
];

/** Signal number written into Pyodide's interrupt buffer to raise KeyboardInterrupt. */
export const SIGINT = 2;

/** A message from a child that is not what the protocol allows (the server kills that child). */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

type Checker = (value: unknown, path: string) => void;

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

function fail(path: string, what: string): never {
  throw new ProtocolError(`${path}: expected ${what}`);
}

const str: Checker = (value, path) => {
  if (typeof value !== "string") fail(path, "a string");
};
const nullableStr: Checker = (value, path) => {
  if (value !== null && typeof value !== "string") fail(path, "a string or null");
};
const nonNegative: Checker = (value, path) => {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0)
    fail(path, "a non-negative number");
};
const nullablePositive: Checker = (value, path) => {
  if (value === null) return;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1)
    fail(path, "a positive integer or null");
};
const bool: Checker = (value, path) => {
  if (typeof value !== "boolean") fail(path, "a boolean");
};
const oneOf =
  (values: readonly string[]): Checker =>
  (value, path) => {
    if (typeof value !== "string" || !values.includes(value)) fail(path, values.join(" | "));
  };
const nullable =
  (checker: Checker): Checker =>
  (value, path) => {
    if (value !== null) checker(value, path);
  };
const stringList: Checker = (value, path) => {
  if (!Array.isArray(value)) fail(path, "an array");
  for (const [index, item] of value.entries()) str(item, `${path}[${index}]`);
};
const finiteList: Checker = (value, path) => {
  if (!Array.isArray(value)) fail(path, "an array");
  for (const [index, item] of value.entries()) {
    if (typeof item !== "number" || !Number.isFinite(item)) fail(`${path}[${index}]`, "a number");
  }
};
const stream: Checker = (value, path) => {
  if (value !== 1 && value !== 2) fail(path, "1 or 2");
};

function shape(fields: Record<string, Checker>): Checker {
  return (value, path) => {
    if (!isObject(value)) fail(path, "an object");
    for (const [name, checker] of Object.entries(fields)) checker(value[name], `${path}.${name}`);
  };
}

const guestError = shape({
  type: str,
  message: str,
  line: nullablePositive,
  column: nullablePositive,
  traceback: str,
  toolCode: nullableStr,
});

const readyInfo = shape({ rssBytes: nonNegative, wasmBytes: nonNegative, loadMs: nonNegative });

const runReport = shape({
  end: oneOf(RUN_ENDS),
  resultJson: nullableStr,
  resultIssues: stringList,
  error: nullable(guestError),
  detail: str,
  stackOverflow: bool,
  stdoutDroppedBytes: nonNegative,
  stderrDroppedBytes: nonNegative,
  stop: nullable(oneOf(STOP_REASONS)),
  memoryExhausted: bool,
  memoryBytes: nonNegative,
  cpuMs: nonNegative,
  reset: bool,
  clock: shape({ values: finiteList, complete: bool }),
});

const CHILD_MESSAGES: Record<ChildMessage["kind"], Checker> = {
  ready: shape({ info: readyInfo }),
  output: shape({ stream, text: str }),
  "tool-call": shape({ callId: nonNegative, name: str, argsJson: str, kwargsJson: str }),
  done: shape({ report: runReport }),
  image: shape({ base64: str, info: readyInfo }),
  failed: shape({ message: str }),
  "session-image": shape({ base64: str, heapBytes: nonNegative, changedPages: nonNegative }),
  "session-image-refused": shape({ reason: str }),
  restored: shape({ info: readyInfo }),
  "restore-failed": shape({ message: str }),
};

/**
 * Checks a decoded frame from a child: answers it typed, or throws {@link ProtocolError}
 * naming the first field that is wrong. Unknown kinds and missing fields are errors.
 */
export function parseChildMessage(value: unknown): ChildMessage {
  if (
    !isObject(value) ||
    typeof value.kind !== "string" ||
    !Object.hasOwn(CHILD_MESSAGES, value.kind)
  ) {
    throw new ProtocolError("message: unknown kind");
  }
  CHILD_MESSAGES[value.kind as ChildMessage["kind"]](value, "message");
  return value as unknown as ChildMessage;
}
