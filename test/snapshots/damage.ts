/**
 * Shared by the damaged-snapshot properties (envelope-property.test.ts, restore-refusal.test.ts):
 * the envelope's layout (src/snapshot/envelope.ts) read from real bytes, the code each kind of
 * damage must give, damage as small descriptions with fast-check arbitraries for them,
 * re-sealing, and the fixture — a real snapshot of a real QuickJS session, and the managers
 * that made it and restore it. Each test file builds its own fixture in `beforeAll` and closes
 * it in `afterAll`.
 */
import { randomBytes } from "node:crypto";
import { zstdCompressSync, zstdDecompressSync } from "node:zlib";
import fc from "fast-check";
import { expect } from "vitest";
import { createKvTools } from "../../capabilities/kv/index.ts";
import { createQuickJsRuntime } from "../../runtimes/quickjs/index.ts";
import {
  DEFAULT_SESSION_LIMITS,
  DEFAULT_SNAPSHOT_BOUNDS,
  type ErrorCode,
  isSandboxError,
  type Journal,
  MemorySnapshotStore,
  RuntimeRegistry,
  readSnapshot,
  type SessionLimits,
  SessionManager,
  type SnapshotHeader,
  type SnapshotKeyring,
  sealSnapshot,
  ToolRegistry,
} from "../../src/index.ts";

// ---------------------------------------------------------------------------------------
// The envelope's layout (src/snapshot/envelope.ts), read from real bytes.

/** Byte offsets of a signed envelope's fields. */
export interface Layout {
  length: number;
  /** End of the header JSON = offset of the payload length. */
  headerEnd: number;
  payloadStart: number;
  /** End of the payload = offset of the digest. */
  payloadEnd: number;
  /** Offset of the signature-kind byte. */
  kindAt: number;
}

/** Reads the layout from the length fields of well-formed envelope bytes. */
export function layoutOf(bytes: Buffer): Layout {
  const headerEnd = 12 + bytes.readUInt32BE(8);
  const payloadStart = headerEnd + 4;
  const payloadEnd = payloadStart + bytes.readUInt32BE(headerEnd);
  return { length: bytes.length, headerEnd, payloadStart, payloadEnd, kindAt: payloadEnd + 32 };
}

/**
 * What a damaged length field gives: bounds are read before the digest is checked, so lengths
 * that reach past the bytes (with room for the 32-byte digest and the kind byte) are
 * SNAPSHOT_TRUNCATED; lengths that fit put the digest somewhere else, so SNAPSHOT_TAMPERED.
 */
export function byDeclaredLengths(bytes: Buffer): ErrorCode {
  if (bytes.length < 12) return "SNAPSHOT_TRUNCATED";
  const headerEnd = 12 + bytes.readUInt32BE(8);
  if (bytes.length < headerEnd + 4) return "SNAPSHOT_TRUNCATED";
  const payloadEnd = headerEnd + 4 + bytes.readUInt32BE(headerEnd);
  return bytes.length < payloadEnd + 33 ? "SNAPSHOT_TRUNCATED" : "SNAPSHOT_TAMPERED";
}

/** A named byte range `[start, end)` of the envelope. */
export interface Region {
  name: string;
  start: number;
  end: number;
  /** The code a byte flipped in this region must give (the damaged bytes decide for lengths). */
  expected: (damaged: Buffer) => ErrorCode;
}

/** Every byte of a signed envelope belongs to exactly one region. */
export function regionsOf(layout: Layout): Region[] {
  const code = (fixed: ErrorCode) => () => fixed;
  return [
    { name: "magic", start: 0, end: 8, expected: code("SNAPSHOT_INVALID") },
    { name: "header length", start: 8, end: 12, expected: byDeclaredLengths },
    { name: "header", start: 12, end: layout.headerEnd, expected: code("SNAPSHOT_TAMPERED") },
    {
      name: "payload length",
      start: layout.headerEnd,
      end: layout.payloadStart,
      expected: byDeclaredLengths,
    },
    {
      name: "payload",
      start: layout.payloadStart,
      end: layout.payloadEnd,
      expected: code("SNAPSHOT_TAMPERED"),
    },
    {
      name: "digest",
      start: layout.payloadEnd,
      end: layout.kindAt,
      expected: code("SNAPSHOT_TAMPERED"),
    },
    // Kind 1 → 0 leaves 32 bytes "after the signature"; any other kind is unknown.
    {
      name: "signature kind",
      start: layout.kindAt,
      end: layout.kindAt + 1,
      expected: code("SNAPSHOT_INVALID"),
    },
    {
      name: "signature",
      start: layout.kindAt + 1,
      end: layout.length,
      expected: code("SNAPSHOT_SIGNATURE_INVALID"),
    },
  ];
}

/** A copy of `bytes` with the byte at `offset` XORed with `mask`. */
export function flip(bytes: Buffer, offset: number, mask: number): Buffer {
  const damaged = Buffer.from(bytes);
  damaged[offset] = damaged[offset]! ^ mask;
  return damaged;
}

/** The code a call throws ("accepted" when it does not); anything but a SandboxError fails. */
export function codeOf(call: () => unknown): ErrorCode | "accepted" {
  try {
    call();
    return "accepted";
  } catch (error) {
    if (isSandboxError(error)) return error.code;
    throw error;
  }
}

/** {@link codeOf} for a call that answers a promise. */
export async function asyncCodeOf(call: () => Promise<unknown>): Promise<ErrorCode | "accepted"> {
  try {
    await call();
    return "accepted";
  } catch (error) {
    if (isSandboxError(error)) return error.code;
    throw error;
  }
}

/** The code `readSnapshot` gives `bytes` under `keyring` and the default bounds. */
export const readCode = (bytes: Uint8Array, keyring: SnapshotKeyring) =>
  codeOf(() => readSnapshot(bytes, keyring, DEFAULT_SNAPSHOT_BOUNDS));

// ---------------------------------------------------------------------------------------
// Re-sealing: a snapshot rewritten and signed again with the right key, so it verifies.

/** `[offset, length]` of a blob in the payload container. */
export type Blob = [number, number];

/** The payload container's manifest (src/snapshot/payload.ts), as much as the tests touch. */
export interface Manifest {
  session: { runtime: string; allowed_side_effects: string[] };
  journal: Journal | null;
  image: { blob: Blob; meta: unknown } | null;
  workspace: { path: string; read_only: boolean; modified_at: number; blob: Blob }[];
}

/** A verified snapshot taken apart: header, manifest and the blobs after it. */
export interface SnapshotParts {
  header: SnapshotHeader;
  manifest: Manifest;
  blobs: Buffer;
}

/** The payload container (src/snapshot/payload.ts) of a verified snapshot, taken apart. */
export function containerOf(bytes: Buffer, keyring: SnapshotKeyring): SnapshotParts {
  const { opened } = readSnapshot(bytes, keyring, DEFAULT_SNAPSHOT_BOUNDS);
  const raw = zstdDecompressSync(opened.payload);
  const manifestLength = raw.readUInt32BE(0);
  return {
    header: structuredClone(opened.header),
    manifest: JSON.parse(raw.subarray(4, 4 + manifestLength).toString("utf8")) as Manifest,
    blobs: Buffer.from(raw.subarray(4 + manifestLength)),
  };
}

/** An uncompressed payload container: manifest length (u32 BE), manifest JSON, blobs. */
export function container(manifest: unknown, blobs: Buffer): Buffer {
  const json = Buffer.from(JSON.stringify(manifest), "utf8");
  const length = Buffer.alloc(4);
  length.writeUInt32BE(json.length, 0);
  return Buffer.concat([length, json, blobs]);
}

/** Lower-case hex of `bytes`. */
export const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

/**
 * Opens `bytes` with `keyring`, lets `change` rewrite its parts, and seals them again with
 * `sealKey` (default: the keyring's key; `null`: unsigned).
 */
export function reseal(
  bytes: Buffer,
  keyring: SnapshotKeyring,
  change: (parts: SnapshotParts) => void,
  sealKey: Uint8Array | null = keyring.key,
): Buffer {
  const parts = containerOf(bytes, keyring);
  change(parts);
  return sealSnapshot(
    parts.header,
    zstdCompressSync(container(parts.manifest, parts.blobs)),
    sealKey,
  ).bytes;
}

/** Sets any field, typed or not, to any value (for declaring nonsense). */
export const set = (target: object, field: string, value: unknown) => {
  (target as Record<string, unknown>)[field] = value;
};

// ---------------------------------------------------------------------------------------
// Damage as small descriptions (fast-check prints them on failure), applied to good bytes.

/** One kind of damage, described small enough for fast-check to print. */
export type Damage =
  | { kind: "flip"; region: string; offset: number; mask: number }
  | { kind: "cut"; length: number }
  | { kind: "append"; extra: Uint8Array }
  | { kind: "foreign"; bytes: Uint8Array }
  | { kind: "magic-then-noise"; tail: Uint8Array }
  | { kind: "other-key"; key: Uint8Array };

/**
 * Applies `damage` to `base` (whose regions are `baseRegions`; "other-key" re-signs `base`,
 * opened with `keyring`), and says which code the damaged bytes must give.
 */
export function applyDamage(
  damage: Damage,
  base: Buffer,
  baseRegions: Region[],
  keyring: SnapshotKeyring,
): { bytes: Buffer; expected: ErrorCode } {
  switch (damage.kind) {
    case "flip": {
      const bytes = flip(base, damage.offset, damage.mask);
      const region = baseRegions.find((each) => each.name === damage.region)!;
      return { bytes, expected: region.expected(bytes) };
    }
    case "cut":
      // Fewer than 8 bytes cannot hold the magic; any longer cut ends before a declared length.
      return {
        bytes: base.subarray(0, damage.length),
        expected: damage.length < 8 ? "SNAPSHOT_INVALID" : "SNAPSHOT_TRUNCATED",
      };
    case "append":
      return { bytes: Buffer.concat([base, damage.extra]), expected: "SNAPSHOT_INVALID" };
    case "foreign":
      return { bytes: Buffer.from(damage.bytes), expected: "SNAPSHOT_INVALID" };
    case "magic-then-noise": {
      const bytes = Buffer.concat([Buffer.from("SANDSNAP"), damage.tail]);
      return { bytes, expected: byDeclaredLengths(bytes) };
    }
    case "other-key":
      return {
        bytes: reseal(base, keyring, () => {}, damage.key),
        expected: "SNAPSHOT_SIGNATURE_INVALID",
      };
  }
}

/** A non-zero XOR mask for one byte. */
export const byteMask = fc.integer({ min: 1, max: 255 });

/** A byte flipped somewhere in one of `regions`. */
export const flipDamage = (regions: Region[]): fc.Arbitrary<Damage> =>
  fc.constantFrom(...regions).chain((region) =>
    fc.record({
      kind: fc.constant("flip" as const),
      region: fc.constant(region.name),
      offset: fc.integer({ min: region.start, max: region.end - 1 }),
      mask: byteMask,
    }),
  );

/** Bytes cut to any length shorter than `length`. */
export const cutDamage = (length: number): fc.Arbitrary<Damage> =>
  fc.record({
    kind: fc.constant("cut" as const),
    length: fc.integer({ min: 0, max: length - 1 }),
  });

/** 1–64 bytes appended after the signature. */
export const appendDamage = (): fc.Arbitrary<Damage> =>
  fc.record({
    kind: fc.constant("append" as const),
    extra: fc.uint8Array({ minLength: 1, maxLength: 64, size: "max" }),
  });

/** Any kind of damage to the fixture's snapshot, including a signature by another key. */
export const anyDamage = ({
  good,
  regions,
  key,
}: Pick<SnapshotFixture, "good" | "regions" | "key">): fc.Arbitrary<Damage> =>
  fc.oneof(
    flipDamage(regions),
    cutDamage(good.length),
    appendDamage(),
    fc.record({
      kind: fc.constant("foreign" as const),
      bytes: fc.uint8Array({ maxLength: 2_048, size: "max" }),
    }),
    fc.record({
      kind: fc.constant("magic-then-noise" as const),
      tail: fc.uint8Array({ maxLength: 256, size: "max" }),
    }),
    fc.record({
      kind: fc.constant("other-key" as const),
      key: fc
        .uint8Array({ minLength: 32, maxLength: 32 })
        .filter((other) => !Buffer.from(other).equals(key)),
    }),
  );

// ---------------------------------------------------------------------------------------
// The snapshot under test: a QuickJS session with tool calls, clock and randomness reads, a
// TypeScript cell and a workspace file.

/** The fixture managers' limit ceilings (memory 128 MB, wall 10 s, CPU 5 s). */
export const ceilings: SessionLimits = {
  ...DEFAULT_SESSION_LIMITS,
  memory_mb: 128,
  wall_ms: 10_000,
  cpu_ms: 5_000,
};

/** The id of the session the snapshot is taken of; it stays alive throughout. */
export const ORIGINAL = "original";

/** The cells run in {@link ORIGINAL} before the snapshot: v = 42, s = 1_764, g = "hi42". */
export const CELLS = [
  {
    language: "javascript",
    code: 'await kv_set("k", 42); var v = await kv_get("k"); var t = Date.now(); var r = Math.random(); [v, t, r]',
  },
  {
    language: "typescript",
    code: "const square = (n: number): number => n * n; var s: number = square(v); s",
  },
  {
    language: "javascript",
    code: 'await kv_set("greeting", "hi"); var g = (await kv_get("greeting")) + v; g',
  },
] as const;

/** A real snapshot of a real session, the managers around it, and helpers bound to both. */
export interface SnapshotFixture {
  runtimes: RuntimeRegistry;
  /** Signed snapshots only, under {@link SnapshotFixture.key}; holds {@link ORIGINAL}. */
  manager: SessionManager;
  /** A second manager, with the same key, that restores unsigned snapshots. */
  lenient: SessionManager;
  /** A fresh random 32-byte signing key. */
  key: Uint8Array;
  keyring: SnapshotKeyring;
  /** The snapshot's bytes, as `getSnapshot` answers them. */
  good: Buffer;
  goodId: string;
  layout: Layout;
  regions: Region[];
  /** The first cell's [v, t, r]: kv value, Date.now(), Math.random(). */
  firstResult: [number, number, number];
  /** `readSnapshot`'s code for `bytes` under `ring` (default: the fixture's keyring). */
  read(bytes: Uint8Array, ring?: SnapshotKeyring): ErrorCode | "accepted";
  /** {@link reseal} of the good bytes (`sealKey` default: the fixture's key; `null`: unsigned). */
  reseal(change: (parts: SnapshotParts) => void, sealKey?: Uint8Array | null): Buffer;
  /** {@link applyDamage} to the good bytes. */
  apply(damage: Damage): { bytes: Buffer; expected: ErrorCode };
  /** A session id not used before in this fixture. */
  targetId(): string;
  /** Restores the good bytes under `id`, checks the state came back, and destroys it again. */
  restoreGoodUnder(id: string): Promise<void>;
  /** Nothing of a refused restore under `id` remains, and the original session still runs. */
  expectNothingLeft(id: string): Promise<void>;
  /** Closes both managers and the runtimes. */
  close(): Promise<void>;
}

/**
 * Runs {@link CELLS} in {@link ORIGINAL} on QuickJS (2 threads) with the kv tools, writes
 * `notes/todo.txt`, and snapshots the session (a journal of 3 runs). Closes what it opened if
 * it fails.
 */
export async function createSnapshotFixture(): Promise<SnapshotFixture> {
  const key = new Uint8Array(randomBytes(32));
  const keyring: SnapshotKeyring = { key, allowUnsigned: false };
  const runtimes = new RuntimeRegistry();
  runtimes.register(createQuickJsRuntime({ threads: 2 }));
  const tools = new ToolRegistry();
  for (const tool of createKvTools()) tools.register(tool);
  const options = {
    runtimes,
    tools,
    defaults: DEFAULT_SESSION_LIMITS,
    ceilings,
    defaultLanguage: "javascript" as const,
  };
  const manager = new SessionManager({
    ...options,
    snapshots: { store: new MemorySnapshotStore(), key },
  });
  const lenient = new SessionManager({
    ...options,
    snapshots: { store: new MemorySnapshotStore(), key, allowUnsigned: true },
  });
  const close = async () => {
    await manager.close();
    await lenient.close();
    await runtimes.close();
  };
  try {
    let firstResult: [number, number, number] | undefined;
    for (const cell of CELLS) {
      const result = await manager.run({ session_id: ORIGINAL, ...cell });
      expect(result, cell.code).toMatchObject({ status: "ok" });
      if (cell === CELLS[0]) firstResult = result.result as [number, number, number];
    }
    manager.workspaces.get(ORIGINAL).write("notes/todo.txt", "restore me");
    const info = await manager.snapshotSession(ORIGINAL);
    expect(info).toMatchObject({ kinds: ["journal"], journal_runs: 3 });
    const good = Buffer.from(await manager.getSnapshot(info.snapshot_id));
    const layout = layoutOf(good);
    const regions = regionsOf(layout);
    let restoreCounter = 0;
    return {
      runtimes,
      manager,
      lenient,
      key,
      keyring,
      good,
      goodId: info.snapshot_id,
      layout,
      regions,
      firstResult: firstResult!,
      read: (bytes, ring = keyring) => readCode(bytes, ring),
      reseal: (change, sealKey = key) => reseal(good, keyring, change, sealKey),
      apply: (damage) => applyDamage(damage, good, regions, keyring),
      targetId: () => `target-${++restoreCounter}`,
      async restoreGoodUnder(id) {
        const restored = await manager.restoreSession({ snapshot: good, session_id: id });
        expect(restored).toMatchObject({ restored_from: "journal", replayed_runs: 3, files: 1 });
        const [, t, r] = firstResult!;
        expect(await manager.run({ session_id: id, code: "[v, s, g, t, r]" })).toMatchObject({
          status: "ok",
          result: [42, 1_764, "hi42", t, r],
        });
        const file = manager.workspaces.get(id).read("notes/todo.txt");
        expect(Buffer.from(file).toString("utf8")).toBe("restore me");
        await manager.destroySession(id);
      },
      async expectNothingLeft(id) {
        expect(manager.listSessions().map((session) => session.id)).toEqual([ORIGINAL]);
        expect(() => manager.getSession(id)).toThrow(
          expect.objectContaining({ code: "SESSION_NOT_FOUND" }),
        );
        expect(manager.workspaces.has(id)).toBe(false);
        expect(await manager.run({ session_id: ORIGINAL, code: "v + s" })).toMatchObject({
          status: "ok",
          result: 42 + 1_764,
        });
      },
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}
