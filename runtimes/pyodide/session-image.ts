/**
 * A Pyodide session image as the server carries it in a snapshot (the `image` blob,
 * docs/snapshots.md): a small header the server writes, then the image the session's child
 * encoded (./image-delta.ts), which the server never decodes — only a contained child does.
 *
 * Layout: `PYODIMG1` (8 bytes) | header length (u32, big-endian) | header (JSON) | image.
 *
 * The header names the base image the delta is against (its cache key, ./image.ts): an
 * image restores only into a server whose base image is the same, which the engine string
 * also says (it ends with the key), so `planRestore` replays the journal elsewhere.
 *
 * @module
 */
import {
  isValidSessionId,
  SandboxError,
  type SessionId,
  type SessionLimits,
} from "../../src/index.ts";

const MAGIC = Buffer.from("PYODIMG1", "latin1");
/** Format of the header below. */
export const SESSION_IMAGE_FORMAT = 1;

/** What the server writes before the image. */
export interface SessionImageHeader {
  format: typeof SESSION_IMAGE_FORMAT;
  /** The session the image was taken of. */
  session_id: SessionId;
  /** Key of the base image the delta is against (20 hex digits). */
  base: string;
  /** The session's limits when the image was taken. */
  limits: SessionLimits;
  /** Size of the session's WebAssembly memory, in bytes. */
  heap_bytes: number;
  /** 4 KiB pages of it that differ from the base image. */
  changed_pages: number;
  /** Cells the session has run (its next cell is `<cell-{cells + 1}>` in tracebacks). */
  cells: number;
}

/** Prefixes an encoded image with its header. */
export function sealSessionImage(header: SessionImageHeader, image: Uint8Array): Buffer {
  const json = Buffer.from(JSON.stringify(header), "utf8");
  const length = Buffer.alloc(4);
  length.writeUInt32BE(json.byteLength, 0);
  return Buffer.concat([MAGIC, length, json, image]);
}

const LIMIT_FIELDS: readonly (keyof SessionLimits)[] = [
  "memory_mb",
  "cpu_ms",
  "wall_ms",
  "max_stdout_bytes",
  "max_external_calls",
  "max_stack_depth",
];

const isCount = (value: unknown): value is number =>
  typeof value === "number" && Number.isSafeInteger(value) && value >= 0;

function invalid(why: string): SandboxError {
  return new SandboxError(
    "SNAPSHOT_INVALID",
    `The snapshot's Pyodide image is unreadable: ${why}.`,
  );
}

/**
 * Splits a sealed image into its header (checked field by field) and the encoded image.
 * @throws SandboxError `SNAPSHOT_INVALID`.
 */
export function openSessionImage(bytes: Uint8Array): {
  header: SessionImageHeader;
  image: Uint8Array;
} {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buffer.byteLength < 12 || !buffer.subarray(0, 8).equals(MAGIC)) {
    throw invalid("it is not a Pyodide session image");
  }
  const length = buffer.readUInt32BE(8);
  if (12 + length > buffer.byteLength) throw invalid("its header is cut");
  let parsed: unknown;
  try {
    parsed = JSON.parse(buffer.toString("utf8", 12, 12 + length));
  } catch {
    throw invalid("its header is not JSON");
  }
  if (typeof parsed !== "object" || parsed === null) throw invalid("its header is not an object");
  const header = parsed as Record<string, unknown>;
  const limits = header.limits as Record<string, unknown> | null;
  if (
    header.format !== SESSION_IMAGE_FORMAT ||
    !isValidSessionId(header.session_id) ||
    typeof header.base !== "string" ||
    !/^[0-9a-f]{20}$/.test(header.base) ||
    typeof limits !== "object" ||
    limits === null ||
    !LIMIT_FIELDS.every((field) => isCount(limits[field])) ||
    !isCount(header.heap_bytes) ||
    !isCount(header.changed_pages) ||
    !isCount(header.cells)
  ) {
    throw invalid("its header is not this server's format");
  }
  return {
    header: header as unknown as SessionImageHeader,
    image: buffer.subarray(12 + length),
  };
}
