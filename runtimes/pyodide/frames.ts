/**
 * Length-prefixed JSON frames: how the server and a contained child talk over a socket.
 *
 * Why not Node's IPC channel: a guest that reaches the child's JavaScript realm can write raw
 * bytes to any file descriptor of its process, including the channel's. Node's IPC reader
 * buffers a message of any announced length and, with "advanced" serialization, feeds it to
 * V8's deserializer. Here a frame is a 4-byte big-endian length and that many bytes of UTF-8
 * JSON; the reader refuses a frame longer than its limit before buffering it, and everything
 * decoded is checked again by the caller (./protocol.ts).
 *
 * No run-time imports beyond Node built-ins: the child process loads this module.
 *
 * @module
 */

/** A frame broke the format or the size limit. */
export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FrameError";
  }
}

const HEADER_BYTES = 4;

/** Encodes one message as a frame. */
export function encodeFrame(message: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(message), "utf8");
  const frame = Buffer.allocUnsafe(HEADER_BYTES + body.byteLength);
  frame.writeUInt32BE(body.byteLength, 0);
  body.copy(frame, HEADER_BYTES);
  return frame;
}

/** Decodes frames from a byte stream, refusing any longer than `maxFrameBytes`. */
export class FrameDecoder {
  readonly #maxFrameBytes: number;
  #chunks: Buffer[] = [];
  #buffered = 0;

  /** @param maxFrameBytes largest frame body accepted, in bytes. */
  constructor(maxFrameBytes: number) {
    this.#maxFrameBytes = maxFrameBytes;
  }

  /**
   * Adds bytes; answers the messages completed by them, in order.
   * @throws FrameError when a frame announces more than the limit or is not JSON.
   */
  push(chunk: Buffer): unknown[] {
    this.#chunks.push(chunk);
    this.#buffered += chunk.byteLength;
    const messages: unknown[] = [];
    for (;;) {
      if (this.#buffered < HEADER_BYTES) break;
      const head = this.#peek(HEADER_BYTES);
      const length = head.readUInt32BE(0);
      if (length > this.#maxFrameBytes) {
        throw new FrameError(
          `a frame of ${length} bytes is over the limit of ${this.#maxFrameBytes}`,
        );
      }
      if (this.#buffered < HEADER_BYTES + length) break;
      const frame = this.#take(HEADER_BYTES + length);
      try {
        messages.push(JSON.parse(frame.toString("utf8", HEADER_BYTES)));
      } catch {
        throw new FrameError("a frame is not JSON");
      }
    }
    return messages;
  }

  #peek(bytes: number): Buffer {
    if (this.#chunks[0]!.byteLength < bytes) this.#chunks = [Buffer.concat(this.#chunks)];
    return this.#chunks[0]!;
  }

  #take(bytes: number): Buffer {
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    const frame = all.subarray(0, bytes);
    const rest = all.subarray(bytes);
    this.#chunks = rest.byteLength > 0 ? [rest] : [];
    this.#buffered = rest.byteLength;
    return frame;
  }
}
