/**
 * A session image as bytes: Pyodide's memory snapshot of a session's interpreter, written as
 * a delta against the base image every interpreter of this build started from, with the
 * session's files; then zstd. Encoded and decoded inside the contained child (./child.ts),
 * never by the server, which only carries the bytes: they are made by a process the guest
 * controls, so only a process equally contained reads them.
 *
 * Pyodide's snapshot is a header (magic, build id, the JavaScript objects Python holds, as
 * JSON; its length is the header's second little-endian u32, the JSON's the third) followed
 * by the whole WebAssembly memory (the layout of the pinned Pyodide 314 build). The memory is cut into 4 KiB pages; a page equal to the base image's
 * (or, past the base's end, all zero) is left out, and every other page is stored XORed with
 * the base's, so what a cell changed inside a page is mostly zeros too. A session that
 * defined a few functions and variables changes a few hundred of the base's 7,680 pages.
 *
 * Layout before compression (integers u32, big-endian):
 * `PYSIMG01` | header length H | header | memory bytes N | page bytes | changed count C |
 * C ascending page indices | C pages (XOR; the last page of memory may be shorter) |
 * files manifest length | manifest (JSON) | files blob length | blob.
 *
 * No run-time imports beyond Node built-ins: the child process loads this module.
 *
 * @module
 */
import { constants, zstdCompressSync, zstdDecompressSync } from "node:zlib";

const MAGIC = Buffer.from("PYSIMG01", "latin1");
/** Pyodide's header before its JSON: magic, header length, JSON length, 0, build id (u32s). */
const PYODIDE_PREFIX_BYTES = 48;
/** Granularity of the delta, in bytes. */
export const PAGE_BYTES = 4_096;
const WASM_PAGE_BYTES = 65_536;
/** zstd level: the changed pages are small; level 3 is fast and within a few % of level 19. */
const ZSTD_LEVEL = 3;

/** What a session image holds. */
export interface SessionImageParts {
  /** Pyodide's memory snapshot (`makeMemorySnapshot`): header, then the WebAssembly memory. */
  snapshot: Uint8Array;
  /** The session's files (./interpreter-image.ts): JSON manifest and the blob it addresses. */
  filesJson: string;
  filesBlob: Uint8Array;
}

/** Figures of an encoded image. */
export interface EncodedImage {
  bytes: Buffer;
  /** Size of the session's WebAssembly memory. */
  heapBytes: number;
  /** Pages of it that differ from the base image. */
  changedPages: number;
  /** Size before compression. */
  rawBytes: number;
}

/** Length of a Pyodide snapshot's header (where the memory begins). */
export function snapshotHeaderBytes(snapshot: Uint8Array): number {
  if (snapshot.byteLength < 16) throw new Error("not a Pyodide memory snapshot");
  const length = new DataView(snapshot.buffer, snapshot.byteOffset, 16).getUint32(4, true);
  if (length < 16 || length > snapshot.byteLength || length % 16 !== 0) {
    throw new Error("not a Pyodide memory snapshot");
  }
  return length;
}

const zeroPage = new Uint8Array(PAGE_BYTES);

/** `target[i] ^= source[i]` over `target`'s length. */
function xorInto(target: Uint8Array, source: Uint8Array): void {
  const length = Math.min(target.byteLength, source.byteLength);
  if (target.byteOffset % 4 === 0 && source.byteOffset % 4 === 0) {
    const words = length >>> 2;
    const t = new Uint32Array(target.buffer, target.byteOffset, words);
    const s = new Uint32Array(source.buffer, source.byteOffset, words);
    for (let i = 0; i < words; i++) t[i]! ^= s[i]!;
    for (let i = words << 2; i < length; i++) target[i]! ^= source[i]!;
    return;
  }
  for (let i = 0; i < length; i++) target[i]! ^= source[i]!;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

/**
 * The snapshot's header, re-laid to the base image's header length when its JSON fits there
 * (Pyodide sizes the header at twice the JSON's length and reads the JSON's own length from
 * it), so that a session whose memory did not grow decodes in place into the base image.
 */
function canonicalHeader(snapshot: Uint8Array, headerBytes: number, baseHeaderBytes: number) {
  const header = snapshot.subarray(0, headerBytes);
  const jsonBytes = new DataView(snapshot.buffer, snapshot.byteOffset, 16).getUint32(8, true);
  if (headerBytes === baseHeaderBytes || PYODIDE_PREFIX_BYTES + jsonBytes > baseHeaderBytes) {
    return header;
  }
  const resized = new Uint8Array(baseHeaderBytes);
  resized.set(header.subarray(0, PYODIDE_PREFIX_BYTES + jsonBytes));
  new DataView(resized.buffer).setUint32(4, baseHeaderBytes, true);
  return resized;
}

/** Encodes a session's snapshot and files against `base` (the base image's bytes). */
export function encodeSessionImage(base: Uint8Array, parts: SessionImageParts): EncodedImage {
  const baseHeaderBytes = snapshotHeaderBytes(base);
  const ownHeaderBytes = snapshotHeaderBytes(parts.snapshot);
  const heap = parts.snapshot.subarray(ownHeaderBytes);
  const header = canonicalHeader(parts.snapshot, ownHeaderBytes, baseHeaderBytes);
  const headerBytes = header.byteLength;
  const baseHeap = base.subarray(baseHeaderBytes);
  const pageCount = Math.ceil(heap.byteLength / PAGE_BYTES);
  const changed: number[] = [];
  for (let page = 0; page < pageCount; page++) {
    const start = page * PAGE_BYTES;
    const own = heap.subarray(start, start + PAGE_BYTES);
    const theirs = baseHeap.subarray(start, start + own.byteLength);
    const reference =
      theirs.byteLength === own.byteLength
        ? theirs
        : Buffer.concat([theirs, zeroPage.subarray(0, own.byteLength - theirs.byteLength)]);
    if (!sameBytes(own, reference)) changed.push(page);
  }
  const files = Buffer.from(parts.filesJson, "utf8");
  let pagesBytes = 0;
  for (const page of changed)
    pagesBytes += Math.min(PAGE_BYTES, heap.byteLength - page * PAGE_BYTES);
  const rawBytes =
    MAGIC.byteLength +
    4 +
    headerBytes +
    12 +
    4 * changed.length +
    pagesBytes +
    4 +
    files.byteLength +
    4 +
    parts.filesBlob.byteLength;
  const raw = Buffer.alloc(rawBytes);
  let at = MAGIC.copy(raw, 0);
  at = raw.writeUInt32BE(headerBytes, at);
  raw.set(header, at);
  at += headerBytes;
  at = raw.writeUInt32BE(heap.byteLength, at);
  at = raw.writeUInt32BE(PAGE_BYTES, at);
  at = raw.writeUInt32BE(changed.length, at);
  for (const page of changed) at = raw.writeUInt32BE(page, at);
  for (const page of changed) {
    const start = page * PAGE_BYTES;
    const own = heap.subarray(start, start + PAGE_BYTES);
    const target = raw.subarray(at, at + own.byteLength);
    target.set(own);
    xorInto(target, baseHeap.subarray(start, start + own.byteLength));
    at += own.byteLength;
  }
  at = raw.writeUInt32BE(files.byteLength, at);
  at += files.copy(raw, at);
  at = raw.writeUInt32BE(parts.filesBlob.byteLength, at);
  raw.set(parts.filesBlob, at);
  const bytes = zstdCompressSync(raw, {
    params: { [constants.ZSTD_c_compressionLevel]: ZSTD_LEVEL },
  });
  return { bytes, heapBytes: heap.byteLength, changedPages: changed.length, rawBytes };
}

/**
 * Decodes an image made by {@link encodeSessionImage} against the same `base`. Refuses
 * (throws) anything malformed, and anything that inflates past `maxRawBytes` or whose memory
 * is larger than `maxHeapBytes`, before allocating it. `base` is consumed: when the image's
 * header and memory are the base's sizes (a session whose memory did not grow), the snapshot
 * is decoded in place into `base`'s own bytes, which the answer then holds.
 */
export function decodeSessionImage(
  base: Uint8Array,
  encoded: Uint8Array,
  limits: { maxRawBytes: number; maxHeapBytes: number },
): SessionImageParts {
  const raw = zstdDecompressSync(encoded, { maxOutputLength: limits.maxRawBytes });
  let at = 0;
  const need = (bytes: number) => {
    if (bytes < 0 || at + bytes > raw.byteLength) throw new Error("the image is truncated");
  };
  const u32 = () => {
    need(4);
    const value = raw.readUInt32BE(at);
    at += 4;
    return value;
  };
  need(MAGIC.byteLength);
  if (!raw.subarray(0, MAGIC.byteLength).equals(MAGIC)) throw new Error("not a session image");
  at = MAGIC.byteLength;
  const headerBytes = u32();
  need(headerBytes);
  const header = raw.subarray(at, at + headerBytes);
  at += headerBytes;
  const heapBytes = u32();
  const pageBytes = u32();
  if (heapBytes % WASM_PAGE_BYTES !== 0 || heapBytes > limits.maxHeapBytes) {
    throw new Error(`the image's memory (${heapBytes} bytes) is not acceptable here`);
  }
  if (pageBytes !== PAGE_BYTES) throw new Error("the image's page size is not this build's");
  const count = u32();
  need(4 * count);
  const pages: number[] = [];
  const pageCount = Math.ceil(heapBytes / PAGE_BYTES);
  for (let i = 0; i < count; i++) {
    const page = u32();
    if (page >= pageCount || (i > 0 && page <= pages[i - 1]!)) {
      throw new Error("the image's page list is malformed");
    }
    pages.push(page);
  }
  const baseHeader = snapshotHeaderBytes(base);
  const baseHeap = base.subarray(baseHeader);
  let snapshot: Uint8Array;
  if (
    baseHeader === headerBytes &&
    baseHeap.byteLength === heapBytes &&
    base.byteOffset === 0 &&
    base.byteLength === base.buffer.byteLength
  ) {
    snapshot = base;
  } else {
    snapshot = new Uint8Array(headerBytes + heapBytes);
    snapshot.set(baseHeap.subarray(0, Math.min(heapBytes, baseHeap.byteLength)), headerBytes);
  }
  snapshot.set(header, 0);
  for (const page of pages) {
    const start = headerBytes + page * PAGE_BYTES;
    const length = Math.min(PAGE_BYTES, heapBytes - page * PAGE_BYTES);
    need(length);
    xorInto(snapshot.subarray(start, start + length), raw.subarray(at, at + length));
    at += length;
  }
  const filesLength = u32();
  need(filesLength);
  const filesJson = raw.toString("utf8", at, at + filesLength);
  at += filesLength;
  const blobLength = u32();
  need(blobLength);
  const filesBlob = new Uint8Array(raw.subarray(at, at + blobLength));
  at += blobLength;
  if (at !== raw.byteLength) throw new Error("the image has bytes past its end");
  return { snapshot, filesJson, filesBlob };
}
