/**
 * Capture of a run's stdout or stderr under a byte cap (`SessionLimits.max_stdout_bytes`).
 *
 * Text past the cap is dropped and counted; the cut falls on a UTF-8 character boundary (a
 * character is never split, and a surrogate pair is never halved). The run goes on.
 *
 * @module
 */
import type { Diagnostic } from "../contract/types.ts";

const encoder = new TextEncoder();

/** One capped output stream. */
export class OutputCapture {
  readonly #maxBytes: number;
  #chunks: string[] = [];
  #bytes = 0;
  #droppedBytes = 0;

  /** @param maxBytes bytes to keep; 0 keeps nothing. */
  constructor(maxBytes: number) {
    this.#maxBytes = Math.max(0, maxBytes);
  }

  /** Appends `text`, keeping what fits under the cap; answers the part kept ("" for none). */
  write(text: string): string {
    if (text.length === 0) return "";
    const room = this.#maxBytes - this.#bytes;
    if (room <= 0) {
      this.#droppedBytes += utf8Length(text);
      return "";
    }
    // Each UTF-16 unit is at most 3 UTF-8 bytes: short text fits without measuring.
    if (text.length * 3 <= room) {
      this.#chunks.push(text);
      this.#bytes += utf8Length(text);
      return text;
    }
    const buffer = new Uint8Array(room);
    const { read, written } = encoder.encodeInto(text, buffer);
    const kept = text.slice(0, read);
    this.#chunks.push(kept);
    this.#bytes += written;
    if (read < text.length) this.#droppedBytes += utf8Length(text.slice(read));
    return kept;
  }

  /**
   * Counts bytes as dropped that never reached this capture: output a backend already cut
   * where it was produced (e.g. in another process, to keep what crosses small).
   */
  countDropped(bytes: number): void {
    if (Number.isFinite(bytes) && bytes > 0) this.#droppedBytes += bytes;
  }

  /**
   * Counts `bytes` as dropped without receiving them: for a backend that stops output past the
   * cap at its source, so the text never has to be copied out of the engine.
   */
  drop(bytes: number): void {
    if (Number.isFinite(bytes) && bytes > 0) this.#droppedBytes += Math.floor(bytes);
  }

  /** What was kept. */
  get text(): string {
    if (this.#chunks.length > 1) this.#chunks = [this.#chunks.join("")];
    return this.#chunks[0] ?? "";
  }

  /** UTF-8 bytes kept. */
  get bytes(): number {
    return this.#bytes;
  }

  /** UTF-8 bytes dropped past the cap. */
  get droppedBytes(): number {
    return this.#droppedBytes;
  }

  /** A warning diagnostic (`OUTPUT_TRUNCATED`) when anything was dropped, else `null`. */
  truncationDiagnostic(stream: "stdout" | "stderr"): Diagnostic | null {
    if (this.#droppedBytes === 0) return null;
    return {
      severity: "warning",
      code: "OUTPUT_TRUNCATED",
      message: `${stream} passed max_stdout_bytes (${this.#maxBytes} bytes); ${this.#droppedBytes} more bytes were dropped.`,
      hint: "Print less, or raise limits.max_stdout_bytes.",
      span: null,
    };
  }
}

/** UTF-8 length of a string in bytes (lone surrogates count as U+FFFD, 3 bytes). */
export function utf8Length(text: string): number {
  return Buffer.byteLength(text, "utf8");
}
