/**
 * Damaged snapshot bytes, as properties (fast-check) over a real snapshot of a real QuickJS
 * session, at the envelope (`readSnapshot`): every kind of damage — a flipped byte in any
 * region of the envelope, a cut, extra bytes, foreign bytes, another key, no signature, another
 * format, a re-signed but malformed header or manifest — is refused with the one code
 * src/snapshot/envelope.ts assigns it. What the manager's restore path and the HTTP server do
 * with damage is in restore-refusal.test.ts; the shared helpers are in damage.ts.
 */
import { zstdCompressSync } from "node:zlib";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ErrorCode, sealSnapshot } from "../../src/index.ts";
import {
  asyncCodeOf,
  byteMask,
  container,
  containerOf,
  createSnapshotFixture,
  cutDamage,
  type Damage,
  flip,
  flipDamage,
  type SnapshotFixture,
  type SnapshotParts,
  set,
} from "./damage.ts";

let fx: SnapshotFixture;
beforeAll(async () => {
  fx = await createSnapshotFixture();
});
afterAll(async () => {
  await fx?.close();
});

describe("the snapshot under test", () => {
  it("is a signed envelope whose regions cover every byte", () => {
    expect(fx.good.subarray(0, 8).toString("ascii")).toBe("SANDSNAP");
    expect(fx.good[fx.layout.kindAt]).toBe(1);
    expect(fx.layout.length).toBe(fx.layout.kindAt + 1 + 32);
    expect(fx.regions.map((region) => region.end - region.start).reduce((a, b) => a + b)).toBe(
      fx.good.length,
    );
    expect(fx.read(fx.good)).toBe("accepted");
  });
});

describe("readSnapshot refuses damaged bytes, each with its code", () => {
  it("a byte flipped in any region gives that region's code", () => {
    const seen = new Map<string, Set<ErrorCode | "accepted">>();
    fc.assert(
      fc.property(flipDamage(fx.regions), (damage) => {
        const { bytes, expected } = fx.apply(damage);
        const code = fx.read(bytes);
        if (damage.kind === "flip") {
          const codes = seen.get(damage.region) ?? new Set();
          seen.set(damage.region, codes.add(code));
        }
        expect(code).toBe(expected);
      }),
      { numRuns: 400 },
    );
    // Each region was hit, and gave only the codes the format allows it.
    expect(Object.fromEntries([...seen].map(([name, codes]) => [name, [...codes].sort()]))).toEqual(
      {
        magic: ["SNAPSHOT_INVALID"],
        "header length": expect.arrayContaining(["SNAPSHOT_TRUNCATED"]),
        header: ["SNAPSHOT_TAMPERED"],
        "payload length": expect.arrayContaining(["SNAPSHOT_TRUNCATED"]),
        payload: ["SNAPSHOT_TAMPERED"],
        digest: ["SNAPSHOT_TAMPERED"],
        "signature kind": ["SNAPSHOT_INVALID"],
        signature: ["SNAPSHOT_SIGNATURE_INVALID"],
      },
    );
    for (const name of ["header length", "payload length"]) {
      for (const code of seen.get(name)!) {
        expect(["SNAPSHOT_TRUNCATED", "SNAPSHOT_TAMPERED"]).toContain(code);
      }
    }
  });

  it("a flipped length field that still fits gives SNAPSHOT_TAMPERED, one that overruns SNAPSHOT_TRUNCATED", () => {
    // Payload length ± 1: the digest is read one byte off, inside the bytes.
    expect(fx.read(flip(fx.good, fx.layout.headerEnd + 3, 1))).toBe("SNAPSHOT_TAMPERED");
    // Payload length + 2^24: far past the end.
    expect(fx.read(flip(fx.good, fx.layout.headerEnd, 1))).toBe("SNAPSHOT_TRUNCATED");
    // Header length ± 1: the payload length is read one byte off, from header text or
    // shifted into the payload, and reaches past the end.
    expect(fx.read(flip(fx.good, 11, 1))).toBe("SNAPSHOT_TRUNCATED");
  });

  it("a cut at any length gives SNAPSHOT_TRUNCATED (SNAPSHOT_INVALID before the magic ends)", () => {
    const boundaries = [
      0,
      7,
      8,
      11,
      12,
      fx.layout.headerEnd,
      fx.layout.payloadStart,
      fx.layout.payloadEnd,
      fx.layout.kindAt,
      fx.layout.kindAt + 1,
      fx.layout.length - 1,
    ];
    fc.assert(
      fc.property(cutDamage(fx.good.length), (damage) => {
        const { bytes, expected } = fx.apply(damage);
        expect(fx.read(bytes)).toBe(expected);
      }),
      { numRuns: 200, examples: boundaries.map((length): [Damage] => [{ kind: "cut", length }]) },
    );
  });

  it("bytes after the signature give SNAPSHOT_INVALID", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 512, size: "max" }), (extra) => {
        expect(fx.read(Buffer.concat([fx.good, extra]))).toBe("SNAPSHOT_INVALID");
      }),
      { numRuns: 200 },
    );
  });

  it("foreign bytes give SNAPSHOT_INVALID; the magic followed by noise TRUNCATED or TAMPERED", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4_096, size: "max" }), (bytes) => {
        expect(fx.read(bytes)).toBe("SNAPSHOT_INVALID");
      }),
      { numRuns: 200 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512, size: "max" }), (tail) => {
        const { bytes, expected } = fx.apply({ kind: "magic-then-noise", tail });
        expect(fx.read(bytes)).toBe(expected);
      }),
      { numRuns: 200 },
    );
    // Noise framed by lengths that fit: the digest decides (TAMPERED) once there is room for
    // one and the kind byte (33 bytes), else TRUNCATED.
    const seen = new Set<string>();
    const framed = fc.record({
      header: fc.uint8Array({ maxLength: 64, size: "max" }),
      payload: fc.uint8Array({ maxLength: 64, size: "max" }),
      trailer: fc.uint8Array({ maxLength: 80, size: "max" }),
    });
    fc.assert(
      fc.property(framed, ({ header, payload, trailer }) => {
        const u32 = (n: number) =>
          Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
        const tail = Buffer.concat([
          u32(header.length),
          header,
          u32(payload.length),
          payload,
          trailer,
        ]);
        const { bytes, expected } = fx.apply({ kind: "magic-then-noise", tail });
        expect(expected).toBe(trailer.length < 33 ? "SNAPSHOT_TRUNCATED" : "SNAPSHOT_TAMPERED");
        const code = fx.read(bytes);
        seen.add(code);
        expect(code).toBe(expected);
      }),
      { numRuns: 200 },
    );
    expect([...seen].sort()).toEqual(["SNAPSHOT_TAMPERED", "SNAPSHOT_TRUNCATED"]);
  });

  it("bytes signed with another key, or a server without a key, give SNAPSHOT_SIGNATURE_INVALID", () => {
    fc.assert(
      fc.property(
        fc
          .uint8Array({ minLength: 1, maxLength: 64 })
          .filter((other) => !Buffer.from(other).equals(fx.key)),
        (other) => {
          // Signed with `other`, checked with `key`; and the good bytes checked with `other`.
          expect(fx.read(fx.reseal(() => {}, other))).toBe("SNAPSHOT_SIGNATURE_INVALID");
          expect(fx.read(fx.good, { key: other, allowUnsigned: false })).toBe(
            "SNAPSHOT_SIGNATURE_INVALID",
          );
        },
      ),
      { numRuns: 50 },
    );
    expect(fx.read(fx.good, { key: null, allowUnsigned: true })).toBe("SNAPSHOT_SIGNATURE_INVALID");
  });

  it("an unsigned snapshot gives SNAPSHOT_UNSIGNED unless unsigned ones are allowed", () => {
    const unsigned = fx.reseal(() => {}, null);
    expect(unsigned[unsigned.length - 1]).toBe(0);
    expect(fx.read(unsigned)).toBe("SNAPSHOT_UNSIGNED");
    expect(fx.read(unsigned, { key: null, allowUnsigned: false })).toBe("SNAPSHOT_UNSIGNED");
    expect(fx.read(unsigned, { key: fx.key, allowUnsigned: true })).toBe("accepted");
    // Its kind byte flipped: 0 → 1 promises a signature that is not there; others are unknown.
    fc.assert(
      fc.property(byteMask, (mask) => {
        const damaged = flip(unsigned, unsigned.length - 1, mask);
        expect(fx.read(damaged, { key: fx.key, allowUnsigned: true })).toBe(
          mask === 1 ? "SNAPSHOT_TRUNCATED" : "SNAPSHOT_INVALID",
        );
      }),
      { numRuns: 100, examples: [[1]] },
    );
  });

  it("another format version gives SNAPSHOT_VERSION_UNSUPPORTED, a non-numeric one SNAPSHOT_INVALID", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 4_294_967_295 }).filter((format) => format !== 1),
        (format) => {
          const bytes = fx.reseal(({ header }) => {
            header.format = format;
          });
          expect(fx.read(bytes)).toBe("SNAPSHOT_VERSION_UNSUPPORTED");
        },
      ),
      { numRuns: 100, examples: [[999], [0], [2]] },
    );
    for (const format of ["1", null, undefined]) {
      const bytes = fx.reseal(({ header }) => {
        (header as { format: unknown }).format = format;
      });
      expect(fx.read(bytes), String(format)).toBe("SNAPSHOT_INVALID");
    }
  });
});

describe("correctly signed snapshots that declare nonsense", () => {
  const malformed: [string, (parts: SnapshotParts) => void][] = [
    ["language cobol", ({ header }) => set(header, "language", "cobol")],
    ["session language cobol", ({ header }) => set(header.session, "language", "cobol")],
    ["no kinds", ({ header }) => set(header, "kinds", [])],
    ["kind tape", ({ header }) => set(header, "kinds", ["tape"])],
    ["compression gzip", ({ header }) => set(header, "compression", "gzip")],
    ["no session", ({ header }) => set(header, "session", undefined)],
    ["memory_mb 0", ({ header }) => set(header.limits, "memory_mb", 0)],
    ["created_at negative", ({ header }) => set(header, "created_at", -1)],
    ["header says image too", ({ header }) => set(header, "kinds", ["journal", "image"])],
    [
      "a workspace blob outside the payload",
      ({ manifest, blobs }) => {
        manifest.workspace[0]!.blob = [0, blobs.length + 1];
      },
    ],
    [
      "a workspace blob at a negative offset",
      ({ manifest }) => {
        manifest.workspace[0]!.blob = [-1, 1];
      },
    ],
    [
      "an image blob outside the payload",
      ({ header, manifest }) => {
        header.kinds = ["journal", "image"];
        manifest.image = { blob: [4_096, 16], meta: null };
      },
    ],
    ["a manifest without a journal", ({ manifest }) => set(manifest, "journal", undefined)],
    [
      "a journal the header does not declare",
      ({ header }) => {
        header.kinds = ["image"];
      },
    ],
    [
      "a seed of three words",
      ({ manifest }) => {
        manifest.journal!.runs[0]!.seed = [1, 2, 3] as unknown as [number, number, number, number];
      },
    ],
    [
      "a run status that does not exist",
      ({ manifest }) => set(manifest.journal!.runs[0]!, "status", "fine"),
    ],
    [
      "an unknown side effect",
      ({ manifest }) => {
        manifest.session.allowed_side_effects = ["teleport"];
      },
    ],
  ];

  it.each(malformed)("%s: SNAPSHOT_INVALID, nothing stored or restored", async (_name, change) => {
    const bytes = fx.reseal(change);
    expect(fx.read(bytes)).toBe("SNAPSHOT_INVALID");
    const stored = await fx.manager.listSnapshots();
    expect(await asyncCodeOf(() => fx.manager.putSnapshot(bytes))).toBe("SNAPSHOT_INVALID");
    expect(await fx.manager.listSnapshots()).toEqual(stored);
    const id = fx.targetId();
    expect(
      await asyncCodeOf(() => fx.manager.restoreSession({ snapshot: bytes, session_id: id })),
    ).toBe("SNAPSHOT_INVALID");
    await fx.expectNothingLeft(id);
  });

  it("payloads that are not zstd, or whose manifest is not JSON, give SNAPSHOT_INVALID", () => {
    const { header } = containerOf(fx.good, fx.keyring);
    const payloads = [
      Buffer.from("not zstd at all"),
      zstdCompressSync(Buffer.alloc(0)),
      zstdCompressSync(Buffer.from([0, 0, 0, 5, 0x7b, 0x7b, 0x7b, 0x7b, 0x7b])),
      zstdCompressSync(container(null, Buffer.alloc(0))),
    ];
    for (const payload of payloads) {
      expect(fx.read(sealSnapshot(header, payload, fx.key).bytes)).toBe("SNAPSHOT_INVALID");
    }
  });
});
