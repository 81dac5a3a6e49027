/**
 * The bounded output ring of one process, with resumable cursors (used by ./process-registry.ts).
 *
 * Each stored chunk carries a cursor: the number of output bytes (UTF-8, all streams together,
 * lost bytes included) the process had produced up to the end of that chunk. Cursors only grow,
 * so a reader that saw the chunk with cursor `c` and asks for what comes after `c` gets exactly
 * the chunks it has not seen. The first chunk it gets carries in `droppedBytes` every byte it
 * will never see between `c` and that chunk: bytes the producer lost, bytes cut from a chunk
 * larger than the ring, and whole chunks the ring dropped before the reader came back.
 * Cursor 0 is "from the start".
 *
 * @module
 */
import { SandboxError } from "../errors.ts";
import type { ProcessOutput } from "./process.ts";

/** A stored output chunk and its cursor. */
export interface ProcessOutputChunk {
  cursor: number;
  output: ProcessOutput;
}

interface StoredChunk {
  cursor: number;
  /** UTF-8 length of `output.chunk`. */
  bytes: number;
  /** `droppedBytes` here: lost just before the chunk, for a reader that saw the chunk before it. */
  output: ProcessOutput;
}

/** Bytes of `text` in UTF-8. */
export function utf8Length(text: string): number {
  return Buffer.byteLength(text, "utf8");
}

/** The last `maxBytes` bytes of `text` in UTF-8, starting at a character boundary. */
export function lastUtf8Bytes(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length <= maxBytes) return text;
  let start = bytes.length - maxBytes;
  while (start < bytes.length && (bytes[start]! & 0xc0) === 0x80) start++;
  return bytes.subarray(start).toString("utf8");
}

/** A copy in the seed's field order: processId, stream, chunk, droppedBytes, threadId?, turnId?, timestamp. */
export function copyOutput(output: ProcessOutput): ProcessOutput {
  const out: Record<string, unknown> = {
    processId: output.processId,
    stream: output.stream,
    chunk: output.chunk,
    droppedBytes: output.droppedBytes,
  };
  if (output.threadId !== undefined) out["threadId"] = output.threadId;
  if (output.turnId !== undefined) out["turnId"] = output.turnId;
  out["timestamp"] = output.timestamp;
  return out as unknown as ProcessOutput;
}

/** At most `maxBytes` of chunk text, oldest chunks dropped first. */
export class OutputRing {
  readonly #maxBytes: number;
  #chunks: StoredChunk[] = [];
  /** Index of the oldest kept chunk (dropped ones are compacted away now and then). */
  #head = 0;
  #keptBytes = 0;
  #endCursor = 0;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /** The cursor after the last chunk: everything produced so far, in bytes. */
  get endCursor(): number {
    return this.#endCursor;
  }

  /**
   * Stores a chunk (a copy; text beyond `maxBytes` is cut from its front and counted in
   * `droppedBytes`) and drops the oldest chunks past the bound.
   * @returns the stored chunk, or `null` for an empty chunk with nothing dropped (not stored).
   */
  append(output: ProcessOutput): ProcessOutputChunk | null {
    let chunk = output.chunk;
    let bytes = utf8Length(chunk);
    let dropped = output.droppedBytes;
    if (bytes === 0 && dropped === 0) return null;
    if (bytes > this.#maxBytes) {
      chunk = lastUtf8Bytes(chunk, this.#maxBytes);
      const kept = utf8Length(chunk);
      dropped += bytes - kept;
      bytes = kept;
    }
    this.#endCursor += dropped + bytes;
    const stored: StoredChunk = {
      cursor: this.#endCursor,
      bytes,
      output: copyOutput({ ...output, chunk, droppedBytes: dropped }),
    };
    this.#chunks.push(stored);
    this.#keptBytes += bytes;
    while (this.#keptBytes > this.#maxBytes) {
      this.#keptBytes -= this.#chunks[this.#head]!.bytes;
      this.#head++;
    }
    if (this.#head > 1_024 && this.#head * 2 > this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
    return { cursor: stored.cursor, output: copyOutput(stored.output) };
  }

  /**
   * Copies of the kept chunks after `cursor`, oldest first; the first one's `droppedBytes` is
   * everything lost between `cursor` and it.
   * @throws SandboxError `INVALID_REQUEST` for a cursor this ring never gave: not an integer,
   *   negative, past the end, or inside a chunk.
   */
  after(cursor: number): ProcessOutputChunk[] {
    if (!Number.isSafeInteger(cursor) || cursor < 0 || cursor > this.#endCursor) {
      throw new SandboxError(
        "INVALID_REQUEST",
        `Output cursor ${cursor} is out of range (0 to ${this.#endCursor}).`,
      );
    }
    // The first kept chunk whose cursor is past `cursor`; cursors grow, so binary search.
    let low = this.#head;
    let high = this.#chunks.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.#chunks[middle]!.cursor > cursor) high = middle;
      else low = middle + 1;
    }
    const out: ProcessOutputChunk[] = [];
    for (let index = low; index < this.#chunks.length; index++) {
      const stored = this.#chunks[index]!;
      const output = copyOutput(stored.output);
      if (index === low) {
        const dataStart = stored.cursor - stored.bytes;
        if (cursor > dataStart - stored.output.droppedBytes) {
          throw new SandboxError(
            "INVALID_REQUEST",
            `Output cursor ${cursor} falls inside a chunk; resume from a chunk's cursor.`,
          );
        }
        output.droppedBytes = dataStart - cursor;
      }
      out.push({ cursor: stored.cursor, output });
    }
    return out;
  }
}
