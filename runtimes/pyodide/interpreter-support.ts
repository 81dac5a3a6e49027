/**
 * Helpers of the interpreter thread (./interpreter.ts): output batching and the shapes of
 * its results. No run-time imports beyond the backend's own protocol types.
 *
 * @module
 */
import type { InterpreterMessage, InterpreterResult } from "./protocol.ts";

const utf8 = new TextEncoder();
const OUTPUT_FLUSH_BYTES = 8_192;
const OUTPUT_FLUSH_MS = 20;

/**
 * Output of one stream on its way to the supervisor, and on to the server's live stream:
 * line-buffered and batched — sent when a line ends and 20 ms have passed since the last
 * send, at 8 KiB, and before every blocking wait — so a run killed mid-way loses little and
 * a `print` arrives whole; once more than the cap has been sent, only the byte count of the
 * rest crosses.
 */
export class StreamBuffer {
  readonly #stream: 1 | 2;
  #pending = "";
  #lastFlush = performance.now();
  #sentBytes = 0;
  #droppedBytes = 0;
  #capBytes = 0;

  readonly #post: (message: InterpreterMessage) => void;

  constructor(stream: 1 | 2, post: (message: InterpreterMessage) => void) {
    this.#stream = stream;
    this.#post = post;
  }

  /** Starts a run whose cap is `capBytes`. */
  reset(capBytes: number): void {
    this.#pending = "";
    this.#sentBytes = 0;
    this.#droppedBytes = 0;
    this.#capBytes = capBytes;
  }

  /** Adds text the guest wrote. */
  write(text: string): void {
    if (this.#sentBytes > this.#capBytes) {
      // The supervisor already holds more than it keeps: only count.
      this.#droppedBytes += utf8.encode(text).byteLength;
      return;
    }
    this.#pending += text;
    const now = performance.now();
    if (
      this.#pending.length >= OUTPUT_FLUSH_BYTES ||
      (now - this.#lastFlush >= OUTPUT_FLUSH_MS && this.#pending.endsWith("\n"))
    ) {
      this.flush();
    }
  }

  /** Sends what is pending. */
  flush(): void {
    this.#lastFlush = performance.now();
    if (this.#pending === "" && this.#droppedBytes === 0) return;
    const text = this.#pending;
    this.#pending = "";
    this.#sentBytes += utf8.encode(text).byteLength;
    this.#post({ kind: "output", stream: this.#stream, text, droppedBytes: this.#droppedBytes });
    this.#droppedBytes = 0;
  }
}

/** A result with nothing in it (end "ok"). */
export function emptyResult(): InterpreterResult {
  return {
    end: "ok",
    resultJson: null,
    resultIssues: [],
    error: null,
    detail: "",
    stackOverflow: false,
    memoryBytes: 0,
    clock: { values: [], complete: true },
  };
}

/** The error of a run whose wait was ended by the supervisor. */
export function interruptedError(): NonNullable<InterpreterResult["error"]> {
  return {
    type: "KeyboardInterrupt",
    message: "",
    line: null,
    column: null,
    traceback: "",
    toolCode: null,
  };
}

/** The outcome the prelude's `run` answered (JSON text), as a result. */
export function fromPython(text: string): InterpreterResult {
  const parsed = JSON.parse(text) as {
    end: "ok" | "syntax_error" | "exception";
    result?: string | null;
    issues?: string[];
    error?: InterpreterResult["error"];
  };
  return {
    ...emptyResult(),
    end: parsed.end,
    resultJson: parsed.result ?? null,
    resultIssues: parsed.issues ?? [],
    error: parsed.error ?? null,
  };
}

/** A JavaScript-level failure: a Python exception that escaped, or Pyodide failing. */
export function failure(error: unknown): InterpreterResult {
  const details = error as { type?: unknown; message?: unknown; pyodide_fatal_error?: unknown };
  const message = describe(error);
  if (details?.pyodide_fatal_error || /fatally failed|Maximum call stack/.test(message)) {
    return {
      ...emptyResult(),
      end: "engine_failed",
      detail: message.split("\n")[0] ?? message,
      stackOverflow: /Maximum call stack size exceeded/.test(message),
    };
  }
  return {
    ...emptyResult(),
    end: "exception",
    error: {
      type: typeof details?.type === "string" ? details.type : "Error",
      message: message.split("\n").at(-1) ?? message,
      line: null,
      column: null,
      traceback: "",
      toolCode: null,
    },
  };
}

/** The message of anything thrown. */
export function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
