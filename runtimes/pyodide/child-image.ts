/**
 * The supervisor's part of session images (./child.ts): asking the interpreter for an image
 * of its session between runs, or to load one in a process that has served nothing yet;
 * encoding the interpreter's memory snapshot against the base image for the server, and
 * decoding an image from the server for the interpreter (./image-delta.ts). Both run in the
 * contained child: the server never decodes what a guest's process made. Either must end
 * within the time the server gives; otherwise the interpreter is stopped and the process
 * exits (its session's next run starts empty).
 *
 * No run-time imports beyond Node built-ins and the backend's dependency-free modules.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { decodeSessionImage, encodeSessionImage } from "./image-delta.ts";
import type {
  ChildMessage,
  InterpreterMessage,
  RestoreRequest,
  SupervisorMessage,
} from "./protocol.ts";

/** What {@link SupervisorImages} needs of the supervisor. */
export interface SupervisorHooks {
  /** The base image file. */
  imagePath: string;
  /** Bytes an image's files may add to its memory (the process's headroom). */
  headroomBytes: number;
  /** No image work may start now (not ready, a run active, the interpreter gone). */
  busy(): boolean;
  send(message: ChildMessage): void;
  toInterpreter(message: SupervisorMessage, transfer?: ArrayBuffer[]): void;
  killInterpreter(): void;
  closeAndExit(code: number): void;
  /** The process is busy, not idle (for the idle watch). */
  active(): void;
  /** An image of a session with this memory cap is being loaded. */
  restoring(memoryCapBytes: number): void;
  /** The image is loaded; its interpreter's memory is this size. */
  restored(wasmBytes: number): void;
}

/** Session images in one child process (see the module comment). */
export class SupervisorImages {
  /** The process has run a cell or loaded an image: it can no longer load one. */
  served = false;
  readonly #hooks: SupervisorHooks;
  #work: { kind: "snapshot" | "restore"; timer: NodeJS.Timeout } | null = null;

  constructor(hooks: SupervisorHooks) {
    this.#hooks = hooks;
  }

  /** An image is being made or loaded. */
  get working(): boolean {
    return this.#work !== null;
  }

  /** Asks the interpreter for an image of its session (answered "session-image" or "-refused"). */
  snapshot(timeoutMs: number): void {
    if (this.#start("snapshot", timeoutMs)) this.#hooks.toInterpreter({ kind: "snapshot" });
  }

  /** Loads an image from the server in place of the base image's interpreter. */
  restore(request: RestoreRequest): void {
    const hooks = this.#hooks;
    if (this.served) {
      hooks.send({ kind: "restore-failed", message: "the process has served a session already" });
      hooks.closeAndExit(1);
      return;
    }
    if (!this.#start("restore", request.timeoutMs)) return;
    this.served = true;
    hooks.restoring(request.memoryCapBytes);
    try {
      const { message, transfer } = decodeFromServer(hooks.imagePath, request, hooks.headroomBytes);
      hooks.toInterpreter(message, transfer);
    } catch (error) {
      this.#end();
      hooks.send({ kind: "restore-failed", message: (error as Error).message });
      hooks.closeAndExit(1);
    }
    // The encoded image and the base image's copy are garbage once handed over.
    (globalThis as { gc?: () => void }).gc?.();
  }

  /** What the interpreter answered. */
  fromInterpreter(
    message: Extract<
      InterpreterMessage,
      { kind: "session-image" | "session-image-refused" | "restored" | "restore-failed" }
    >,
  ): void {
    const expected = message.kind.startsWith("session-image") ? "snapshot" : "restore";
    if (this.#work?.kind !== expected) return;
    this.#end();
    try {
      this.#answer(message);
    } finally {
      (globalThis as { gc?: () => void }).gc?.();
    }
  }

  #answer(
    message: Extract<
      InterpreterMessage,
      { kind: "session-image" | "session-image-refused" | "restored" | "restore-failed" }
    >,
  ): void {
    const hooks = this.#hooks;
    switch (message.kind) {
      case "session-image":
        try {
          hooks.send(encodeForServer(hooks.imagePath, message));
        } catch (error) {
          hooks.send({ kind: "session-image-refused", reason: (error as Error).message });
        }
        return;
      case "session-image-refused":
        hooks.send({
          kind: "session-image-refused",
          reason: String(message.reason).slice(0, 2_000),
        });
        return;
      case "restored":
        hooks.restored(message.info.wasmBytes);
        hooks.send({
          kind: "restored",
          info: { ...message.info, rssBytes: process.memoryUsage.rss() },
        });
        return;
      default:
        hooks.send({ kind: "restore-failed", message: String(message.message).slice(0, 2_000) });
        hooks.closeAndExit(1);
    }
  }

  #start(kind: "snapshot" | "restore", timeoutMs: number): boolean {
    const hooks = this.#hooks;
    if (hooks.busy() || this.#work) {
      if (kind === "snapshot") {
        hooks.send({ kind: "session-image-refused", reason: "the process is busy" });
      } else {
        hooks.send({ kind: "restore-failed", message: "the process is busy" });
        hooks.closeAndExit(1);
      }
      return false;
    }
    hooks.active();
    const timer = setTimeout(() => {
      this.#work = null;
      hooks.killInterpreter();
      const why = `the interpreter did not ${kind === "snapshot" ? "make" : "load"} the image within ${timeoutMs} ms`;
      hooks.send(
        kind === "snapshot"
          ? { kind: "session-image-refused", reason: why }
          : { kind: "restore-failed", message: why },
      );
      hooks.closeAndExit(1);
    }, timeoutMs);
    this.#work = { kind, timer };
    return true;
  }

  #end(): void {
    if (this.#work) clearTimeout(this.#work.timer);
    this.#work = null;
    this.#hooks.active();
  }
}

/**
 * Largest encoded image a child sends: its base64 must fit the server's frame limit
 * (256 MiB), and no server keeps a snapshot this large by default (128 MiB).
 */
const MAX_IMAGE_BYTES = 180 * 1_048_576;

/** The interpreter's image of its session, encoded against the base image at `basePath`. */
function encodeForServer(
  basePath: string,
  image: Extract<InterpreterMessage, { kind: "session-image" }>,
): Extract<ChildMessage, { kind: "session-image" }> {
  const encoded = encodeSessionImage(readFileSync(basePath), {
    snapshot: image.snapshot,
    filesJson: String(image.filesJson),
    filesBlob: image.filesBlob,
  });
  if (encoded.bytes.byteLength > MAX_IMAGE_BYTES) {
    throw new Error(
      `the image would be ${encoded.bytes.byteLength} bytes, more than a process sends (${MAX_IMAGE_BYTES})`,
    );
  }
  return {
    kind: "session-image",
    base64: encoded.bytes.toString("base64"),
    heapBytes: encoded.heapBytes,
    changedPages: encoded.changedPages,
  };
}

/**
 * An image from the server, decoded against the base image at `basePath` (read afresh: the
 * decoding may reuse its bytes), as the interpreter loads it (with the buffers to transfer). Its memory must fit `memoryCapBytes`;
 * its files may add `headroomBytes` more.
 * @throws Error when the image is malformed or too large.
 */
function decodeFromServer(
  basePath: string,
  request: RestoreRequest,
  headroomBytes: number,
): { message: Extract<SupervisorMessage, { kind: "restore" }>; transfer: ArrayBuffer[] } {
  const parts = decodeSessionImage(readFileSync(basePath), Buffer.from(request.image, "base64"), {
    maxRawBytes: request.memoryCapBytes + headroomBytes,
    maxHeapBytes: request.memoryCapBytes,
  });
  return {
    message: { kind: "restore", ...parts },
    transfer: [parts.snapshot.buffer as ArrayBuffer, parts.filesBlob.buffer as ArrayBuffer],
  };
}
