/**
 * The payload container inside a snapshot envelope (before zstd):
 *
 * ```
 * u32 manifest length M (big-endian) | manifest: UTF-8 JSON (M bytes) | blobs
 * ```
 *
 * The manifest holds the session's settings, its journal (or null), the image's place and
 * metadata (or null), and the workspace's files, whose contents are blobs addressed by
 * `[offset, length]` from the start of the blob area.
 *
 * Source: node:zlib (zstd).
 * @module
 */
import { constants, zstdCompressSync, zstdDecompressSync } from "node:zlib";
import type { SideEffect } from "../contract/types.ts";
import { SandboxError } from "../errors.ts";
import type { Journal } from "./journal.ts";
import { assertSnapshotShape, manifestSchema } from "./schema.ts";

/** A workspace file in a snapshot. */
export interface SnapshotFile {
  path: string;
  read_only: boolean;
  modified_at: number;
  content: Uint8Array;
}

/** Everything a snapshot holds besides its header. */
export interface SnapshotPayload {
  /** The session's backend and policy. */
  session: { runtime: string; allowed_side_effects: SideEffect[] };
  journal: Journal | null;
  /** The backend's image of the session, with its own metadata, or null. */
  image: { bytes: Uint8Array; meta: unknown } | null;
  workspace: SnapshotFile[];
}

type Blob = [offset: number, length: number];

interface Manifest {
  session: SnapshotPayload["session"];
  journal: Journal | null;
  image: { blob: Blob; meta: unknown } | null;
  workspace: { path: string; read_only: boolean; modified_at: number; blob: Blob }[];
}

/** Encodes and compresses a payload; answers the compressed bytes and the raw size. */
export function encodePayload(payload: SnapshotPayload): { compressed: Buffer; rawBytes: number } {
  const blobs: Uint8Array[] = [];
  let offset = 0;
  const place = (bytes: Uint8Array): Blob => {
    blobs.push(bytes);
    const blob: Blob = [offset, bytes.byteLength];
    offset += bytes.byteLength;
    return blob;
  };
  const manifest: Manifest = {
    session: payload.session,
    journal: payload.journal,
    image: payload.image ? { blob: place(payload.image.bytes), meta: payload.image.meta } : null,
    workspace: payload.workspace.map((file) => ({
      path: file.path,
      read_only: file.read_only,
      modified_at: file.modified_at,
      blob: place(file.content),
    })),
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest), "utf8");
  const length = Buffer.alloc(4);
  length.writeUInt32BE(manifestBytes.length, 0);
  const raw = Buffer.concat([length, manifestBytes, ...blobs]);
  const compressed = zstdCompressSync(raw, { params: { [constants.ZSTD_c_compressionLevel]: 6 } });
  return { compressed, rawBytes: raw.length };
}

/**
 * Decompresses and reads a payload, refusing one that inflates past `maxBytes`.
 * @throws SandboxError `SNAPSHOT_TOO_LARGE`, `SNAPSHOT_INVALID`.
 */
export function decodePayload(compressed: Uint8Array, maxBytes: number): SnapshotPayload {
  let raw: Buffer;
  try {
    raw = zstdDecompressSync(compressed, { maxOutputLength: maxBytes });
  } catch (error) {
    if ((error as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") {
      throw new SandboxError(
        "SNAPSHOT_TOO_LARGE",
        `The snapshot's payload inflates past ${maxBytes} bytes.`,
      );
    }
    throw new SandboxError("SNAPSHOT_INVALID", "The snapshot's payload is not zstd data.");
  }
  let manifest: Manifest;
  let manifestLength: number;
  try {
    manifestLength = raw.readUInt32BE(0);
    manifest = JSON.parse(raw.subarray(4, 4 + manifestLength).toString("utf8")) as Manifest;
  } catch (error) {
    throw new SandboxError(
      "SNAPSHOT_INVALID",
      `The snapshot's payload cannot be read: ${(error as Error).message}`,
    );
  }
  assertSnapshotShape(manifestSchema, manifest, "payload manifest");
  try {
    const area = raw.subarray(4 + manifestLength);
    const read = ([start, length]: Blob): Uint8Array => {
      if (
        !Number.isInteger(start) ||
        !Number.isInteger(length) ||
        start < 0 ||
        length < 0 ||
        start + length > area.length
      ) {
        throw new RangeError("a blob lies outside the payload");
      }
      return area.subarray(start, start + length);
    };
    // A recorded value must be JSON: replay hands it to the guest as it is.
    for (const run of manifest.journal?.runs ?? []) {
      for (const call of run.calls) {
        if (call.reply?.ok === true) JSON.parse(call.reply.valueJson);
      }
    }
    return {
      session: manifest.session,
      journal: manifest.journal,
      image: manifest.image
        ? { bytes: read(manifest.image.blob), meta: manifest.image.meta }
        : null,
      workspace: manifest.workspace.map((file) => ({
        path: String(file.path),
        read_only: Boolean(file.read_only),
        modified_at: Number(file.modified_at) || 0,
        content: read(file.blob),
      })),
    };
  } catch (error) {
    throw new SandboxError(
      "SNAPSHOT_INVALID",
      `The snapshot's payload cannot be read: ${(error as Error).message}`,
    );
  }
}
