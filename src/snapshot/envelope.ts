/**
 * The snapshot envelope: bytes anyone can carry to another host. docs/snapshots.md specifies
 * the format so another implementation can read it; this is the reference.
 *
 * ```
 * offset        size  field
 * 0             8     magic "SANDSNAP"
 * 8             4     header length H (u32, big-endian)
 * 12            H     header: UTF-8 JSON (see SnapshotHeader)
 * 12+H          4     payload length P (u32, big-endian)
 * 16+H          P     payload: zstd-compressed container (see ./payload.ts)
 * 16+H+P        32    digest: SHA3-256 of bytes [0, 16+H+P) — the snapshot id (hex)
 * 48+H+P        1     signature kind: 0 none, 1 HMAC-SHA256
 * 49+H+P        0|32  signature: HMAC-SHA256(key, bytes [0, 16+H+P))
 * ```
 *
 * Checks on open, in order, each with its own code: magic (`SNAPSHOT_INVALID`), lengths
 * (`SNAPSHOT_TRUNCATED`), digest (`SNAPSHOT_TAMPERED`), header (`SNAPSHOT_INVALID`), version
 * (`SNAPSHOT_VERSION_UNSUPPORTED`), signature (`SNAPSHOT_UNSIGNED`,
 * `SNAPSHOT_SIGNATURE_INVALID`), then the header's fields (`SNAPSHOT_INVALID`). The digest tells altered or corrupted bytes from bytes signed
 * with another key: altered bytes fail the digest; a wrong key passes it and fails the HMAC.
 *
 * Source: node:crypto (sha3-256, HMAC-SHA256, timingSafeEqual).
 * @module
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import {
  type Language,
  type SessionLimits,
  type SessionMeta,
  SNAPSHOT_VERSION,
} from "../contract/types.ts";
import { SandboxError } from "../errors.ts";
import { assertSnapshotShape, snapshotHeaderSchema } from "./schema.ts";

/** The first 8 bytes of every snapshot. */
export const SNAPSHOT_MAGIC = Buffer.from("SANDSNAP", "ascii");

/** Kinds of state a snapshot holds. */
export type SnapshotStateKind = "journal" | "image";

/** The header: what `canRestoreSnapshot` reads without touching the payload. */
export interface SnapshotHeader {
  /** {@link SNAPSHOT_VERSION} of the writer. */
  format: number;
  /** Backend id, e.g. `"quickjs"`. */
  backend: string;
  /** The backend's exact engine build (`RuntimeInfo.engine`). */
  engine: string;
  language: Language;
  /** Seed 004's SessionMeta of the session snapshotted. */
  session: SessionMeta;
  limits: SessionLimits;
  /** Kinds of state inside (a journal is portable; an image needs the same engine build). */
  kinds: SnapshotStateKind[];
  /** Unix epoch ms. */
  created_at: number;
  /** Always `"zstd"`. */
  compression: "zstd";
  /** Bytes of the uncompressed payload container. */
  payload_bytes: number;
}

/** How snapshots are signed and checked. */
export interface SnapshotKeyring {
  /** The HMAC key snapshots are signed with; null writes unsigned snapshots. */
  key: Uint8Array | null;
  /** Restore unsigned snapshots (an explicit, insecure setting). */
  allowUnsigned: boolean;
}

/** An opened, verified snapshot. */
export interface OpenedSnapshot {
  id: string;
  header: SnapshotHeader;
  /** The compressed payload (./payload.ts reads it). */
  payload: Uint8Array;
  signed: boolean;
}

const DIGEST_BYTES = 32;
const SIGNATURE_BYTES = 32;

function fail(
  code:
    | "SNAPSHOT_INVALID"
    | "SNAPSHOT_TRUNCATED"
    | "SNAPSHOT_TAMPERED"
    | "SNAPSHOT_VERSION_UNSUPPORTED"
    | "SNAPSHOT_UNSIGNED"
    | "SNAPSHOT_SIGNATURE_INVALID",
  message: string,
): never {
  throw new SandboxError(code, message);
}

/** Writes an envelope around a compressed payload; answers the bytes and the snapshot id. */
export function sealSnapshot(
  header: SnapshotHeader,
  payload: Uint8Array,
  key: Uint8Array | null,
): { bytes: Buffer; id: string } {
  const headerBytes = Buffer.from(JSON.stringify(header), "utf8");
  const body = Buffer.alloc(16 + headerBytes.length + payload.byteLength);
  SNAPSHOT_MAGIC.copy(body, 0);
  body.writeUInt32BE(headerBytes.length, 8);
  headerBytes.copy(body, 12);
  body.writeUInt32BE(payload.byteLength, 12 + headerBytes.length);
  Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).copy(
    body,
    16 + headerBytes.length,
  );
  const digest = createHash("sha3-256").update(body).digest();
  const signature = key ? createHmac("sha256", key).update(body).digest() : null;
  const bytes = Buffer.concat([
    body,
    digest,
    Buffer.from([signature ? 1 : 0]),
    ...(signature ? [signature] : []),
  ]);
  return { bytes, id: digest.toString("hex") };
}

function parseHeader(buffer: Buffer, headerEnd: number): SnapshotHeader {
  let header: SnapshotHeader;
  try {
    header = JSON.parse(buffer.subarray(12, headerEnd).toString("utf8")) as SnapshotHeader;
  } catch {
    fail("SNAPSHOT_INVALID", "The snapshot's header is not JSON.");
  }
  if (typeof header !== "object" || header === null || typeof header.format !== "number") {
    fail("SNAPSHOT_INVALID", "The snapshot's header has no format version.");
  }
  return header;
}

/** Checks the magic and reads the header's and payload's bounds. */
function bounds(bytes: Uint8Array): { buffer: Buffer; headerEnd: number; payloadEnd: number } {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buffer.length < 8 || !buffer.subarray(0, 8).equals(SNAPSHOT_MAGIC)) {
    fail("SNAPSHOT_INVALID", "These bytes are not a snapshot (no SANDSNAP magic).");
  }
  if (buffer.length < 12) fail("SNAPSHOT_TRUNCATED", "The snapshot ends inside its header length.");
  const headerEnd = 12 + buffer.readUInt32BE(8);
  if (buffer.length < headerEnd + 4)
    fail("SNAPSHOT_TRUNCATED", "The snapshot ends inside its header.");
  const payloadEnd = headerEnd + 4 + buffer.readUInt32BE(headerEnd);
  if (buffer.length < payloadEnd + DIGEST_BYTES + 1)
    fail("SNAPSHOT_TRUNCATED", "The snapshot ends before its digest.");
  return { buffer, headerEnd, payloadEnd };
}

/**
 * Reads only the header, without checking digest or signature (for `canRestoreSnapshot`).
 * @throws SandboxError `SNAPSHOT_INVALID`, `SNAPSHOT_TRUNCATED`.
 */
export function peekSnapshotHeader(bytes: Uint8Array): SnapshotHeader {
  const { buffer, headerEnd } = bounds(bytes);
  return parseHeader(buffer, headerEnd);
}

/**
 * Opens and verifies a snapshot (see the module comment for the order of checks).
 * @throws SandboxError with the code of the first check that fails.
 */
export function openSnapshot(bytes: Uint8Array, keyring: SnapshotKeyring): OpenedSnapshot {
  // Lengths are read before the digest is checked, so a truncated file says so.
  const { buffer, headerEnd, payloadEnd } = bounds(bytes);
  const trailerEnd = payloadEnd + DIGEST_BYTES + 1;
  const body = buffer.subarray(0, payloadEnd);
  const digest = createHash("sha3-256").update(body).digest();
  if (!digest.equals(buffer.subarray(payloadEnd, payloadEnd + DIGEST_BYTES))) {
    fail(
      "SNAPSHOT_TAMPERED",
      "The snapshot's bytes do not match its digest: it was altered or corrupted.",
    );
  }
  const signatureKind = buffer[payloadEnd + DIGEST_BYTES];
  const expectedLength = trailerEnd + (signatureKind === 1 ? SIGNATURE_BYTES : 0);
  if (signatureKind !== 0 && signatureKind !== 1)
    fail("SNAPSHOT_INVALID", `Unknown signature kind ${signatureKind}.`);
  if (buffer.length < expectedLength)
    fail("SNAPSHOT_TRUNCATED", "The snapshot ends inside its signature.");
  if (buffer.length > expectedLength)
    fail("SNAPSHOT_INVALID", "The snapshot has bytes after its signature.");
  const header = parseHeader(buffer, headerEnd);
  if (header.format !== SNAPSHOT_VERSION) {
    fail(
      "SNAPSHOT_VERSION_UNSUPPORTED",
      `The snapshot has format ${header.format}; this server reads format ${SNAPSHOT_VERSION}.`,
    );
  }
  if (signatureKind === 0) {
    if (!keyring.allowUnsigned) {
      fail(
        "SNAPSHOT_UNSIGNED",
        "The snapshot is not signed; this server restores only signed snapshots.",
      );
    }
  } else {
    if (!keyring.key)
      fail(
        "SNAPSHOT_SIGNATURE_INVALID",
        "The snapshot is signed, and this server has no key to check it.",
      );
    const expected = createHmac("sha256", keyring.key).update(body).digest();
    const given = buffer.subarray(trailerEnd, trailerEnd + SIGNATURE_BYTES);
    if (!timingSafeEqual(expected, given)) {
      fail(
        "SNAPSHOT_SIGNATURE_INVALID",
        "The snapshot was not signed with this server's key (SANDBOX_SNAPSHOT_KEY).",
      );
    }
  }
  assertSnapshotShape(snapshotHeaderSchema, header, "header");
  return {
    id: digest.toString("hex"),
    header,
    payload: buffer.subarray(headerEnd + 4, payloadEnd),
    signed: signatureKind === 1,
  };
}
