/**
 * Damaged snapshots at the restore path, as properties (fast-check) over a real snapshot of a
 * real QuickJS session: `putSnapshot` and `restoreSession` refuse every kind of damage with the
 * code of its kind, as do verified snapshots that cannot be restored here (a workspace path
 * outside the workspace, limits above the ceilings, an image only, no signature, a re-signed
 * journal that replays another way); nothing is half-restored; and the manager and the HTTP
 * server keep serving. The envelope-level properties are in envelope-property.test.ts; the
 * shared helpers are in damage.ts.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { quickJsInfo } from "../../runtimes/quickjs/index.ts";
import { defaultConfig } from "../../src/config.ts";
import {
  type ErrorCode,
  type Journal,
  RUN_STATUSES,
  type SnapshotKeyring,
} from "../../src/index.ts";
import { createServer, type SandboxServer } from "../../src/server.ts";
import {
  anyDamage,
  appendDamage,
  applyDamage,
  asyncCodeOf,
  CELLS,
  ceilings,
  containerOf,
  createSnapshotFixture,
  cutDamage,
  flipDamage,
  hex,
  layoutOf,
  regionsOf,
  reseal,
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

describe("correctly signed snapshots that declare nonsense", () => {
  it("a workspace path that leaves the workspace verifies, but restores as SNAPSHOT_INVALID", async () => {
    const bytes = fx.reseal(({ manifest }) => {
      manifest.workspace[0]!.path = "../../etc/passwd";
    });
    expect(fx.read(bytes)).toBe("accepted");
    const id = fx.targetId();
    expect(
      await asyncCodeOf(() => fx.manager.restoreSession({ snapshot: bytes, session_id: id })),
    ).toBe("SNAPSHOT_INVALID");
    await fx.expectNothingLeft(id);
    await fx.restoreGoodUnder(id);
  });

  it("limits above this server's ceilings give LIMIT_EXCEEDS_CEILING, and nothing is restored", async () => {
    for (const change of [
      ({ header }: SnapshotParts) => set(header.limits, "memory_mb", ceilings.memory_mb + 1),
      ({ manifest }: SnapshotParts) =>
        set(manifest.journal!.runs[1]!.limits, "cpu_ms", ceilings.cpu_ms + 1),
    ]) {
      const id = fx.targetId();
      const bytes = fx.reseal(change);
      expect(
        await asyncCodeOf(() => fx.manager.restoreSession({ snapshot: bytes, session_id: id })),
      ).toBe("LIMIT_EXCEEDS_CEILING");
      await fx.expectNothingLeft(id);
    }
  });

  it("an image-only snapshot: QuickJS restores journals only", async () => {
    const imageOnly = (backend: string, engine: string) =>
      fx.reseal(({ header, manifest, blobs }) => {
        header.kinds = ["image"];
        header.backend = backend;
        header.engine = engine;
        manifest.journal = null;
        manifest.session.runtime = backend;
        manifest.image = { blob: [0, Math.min(4, blobs.length)], meta: { engine } };
      });
    const cases: [Buffer, ErrorCode][] = [
      // QuickJS's own id, its own or another build: QuickJS restores no image at all, so it is
      // incompatible (build mismatch is for backends that restore images of their own build).
      [imageOnly("quickjs", "quickjs (some other build)"), "SNAPSHOT_INCOMPATIBLE"],
      [imageOnly("quickjs", quickJsInfo().engine), "SNAPSHOT_INCOMPATIBLE"],
      // Another backend's image, and no journal: nothing here can restore it.
      [imageOnly("v8", "v8 13.0"), "SNAPSHOT_INCOMPATIBLE"],
    ];
    for (const [bytes, code] of cases) {
      expect(fx.read(bytes)).toBe("accepted");
      const id = fx.targetId();
      expect(
        await asyncCodeOf(() => fx.manager.restoreSession({ snapshot: bytes, session_id: id })),
      ).toBe(code);
      await fx.expectNothingLeft(id);
    }
  });

  it("an unsigned snapshot restores where unsigned snapshots are allowed", async () => {
    const unsigned = fx.reseal(() => {}, null);
    const id = fx.targetId();
    expect(
      await asyncCodeOf(() => fx.manager.restoreSession({ snapshot: unsigned, session_id: id })),
    ).toBe("SNAPSHOT_UNSIGNED");
    await fx.expectNothingLeft(id);
    const restored = await fx.lenient.restoreSession({
      snapshot: unsigned,
      session_id: "lenient-1",
    });
    expect(restored).toMatchObject({ restored_from: "journal", replayed_runs: 3 });
    expect(await fx.lenient.run({ session_id: "lenient-1", code: "g" })).toMatchObject({
      result: "hi42",
    });
    await fx.lenient.destroySession("lenient-1");
  });
});

describe("restoreSession refuses damage and leaves nothing behind", () => {
  it("any damage: the code of its kind from put and restore; the id stays free", async () => {
    const stored = await fx.manager.listSnapshots();
    await fc.assert(
      fc.asyncProperty(anyDamage(fx), async (damage) => {
        const { bytes, expected } = fx.apply(damage);
        expect(await asyncCodeOf(() => fx.manager.putSnapshot(bytes))).toBe(expected);
        const id = fx.targetId();
        expect(
          await asyncCodeOf(() => fx.manager.restoreSession({ snapshot: bytes, session_id: id })),
        ).toBe(expected);
        await fx.expectNothingLeft(id);
        await fx.restoreGoodUnder(id);
      }),
      { numRuns: 25 },
    );
    expect(await fx.manager.listSnapshots()).toEqual(stored);
  });

  it("a journal whose tool replies, results, clock or calls were changed gives SNAPSHOT_DIVERGED", async () => {
    const [, t] = fx.firstResult;
    const digestOtherThan = (original: string) =>
      fc
        .uint8Array({ minLength: 32, maxLength: 32 })
        .map(hex)
        .filter((digest) => digest !== original);
    const runIndex = fc.integer({ min: 0, max: CELLS.length - 1 });
    const { manifest } = containerOf(fx.good, fx.keyring);
    const runs = manifest.journal!.runs;
    type Change = { what: string; change: (journal: Journal) => void };
    const changes: fc.Arbitrary<Change> = fc.oneof(
      // kv_get answered another value than the 42 the guest originally saw.
      fc
        .jsonValue()
        .map((value) => JSON.stringify(value))
        .filter((json) => json !== "42")
        .map((json) => ({
          what: `kv_get answers ${json}`,
          change: (journal: Journal) => {
            journal.runs[0]!.calls[1]!.reply = { ok: true, valueJson: json };
          },
        })),
      fc.constant({
        what: "kv_get failed",
        change: (journal: Journal) => {
          journal.runs[0]!.calls[1]!.reply = {
            ok: false,
            status: "error",
            code: "KV_DOWN",
            message: "down",
            fatal: false,
          };
        },
      }),
      fc.tuple(runIndex, fc.constant(null)).chain(([index]) =>
        digestOtherThan(runs[index]!.result_digest!).map((digest) => ({
          what: `run ${index} result_digest ${digest}`,
          change: (journal: Journal) => {
            journal.runs[index]!.result_digest = digest;
          },
        })),
      ),
      fc
        .tuple(runIndex, fc.constantFrom(...RUN_STATUSES.filter((status) => status !== "ok")))
        .map(([index, status]) => ({
          what: `run ${index} status ${status}`,
          change: (journal: Journal) => {
            journal.runs[index]!.status = status;
          },
        })),
      fc.constantFrom(0, 1).chain((call) =>
        digestOtherThan(runs[0]!.calls[call]!.request_digest).map((digest) => ({
          what: `call ${call} request_digest ${digest}`,
          change: (journal: Journal) => {
            journal.runs[0]!.calls[call]!.request_digest = digest;
          },
        })),
      ),
      fc.constantFrom(0, 1).map((call) => ({
        what: `call ${call} dropped`,
        change: (journal: Journal) => {
          journal.runs[0]!.calls.splice(call, 1);
        },
      })),
      fc.constant({
        what: "a call recorded twice",
        change: (journal: Journal) => {
          journal.runs[0]!.calls.push(structuredClone(journal.runs[0]!.calls[1]!));
        },
      }),
      fc
        .double({ noNaN: true, noDefaultInfinity: true })
        .filter((value) => value !== t && !Object.is(value, -0))
        .map((value) => ({
          what: `Date.now() read as ${value}`,
          change: (journal: Journal) => {
            journal.runs[0]!.clock[0] = value;
          },
        })),
      fc.constant({
        what: "the clock read one time too many",
        change: (journal: Journal) => {
          journal.runs[0]!.clock.push(t + 1);
        },
      }),
    );
    await fc.assert(
      fc.asyncProperty(changes, async ({ change }) => {
        const bytes = fx.reseal(({ manifest: copy }) => change(copy.journal!));
        // It verifies: the signature is right, only the replay can tell.
        expect(fx.read(bytes)).toBe("accepted");
        const id = fx.targetId();
        expect(
          await asyncCodeOf(() => fx.manager.restoreSession({ snapshot: bytes, session_id: id })),
        ).toBe("SNAPSHOT_DIVERGED");
        await fx.expectNothingLeft(id);
        await fx.restoreGoodUnder(id);
      }),
      { numRuns: 25 },
    );
  });
});

// ---------------------------------------------------------------------------------------

describe("over HTTP", () => {
  const servers: SandboxServer[] = [];
  let app: FastifyInstance;
  const serverKey = randomBytes(32);
  const httpKeyring: SnapshotKeyring = { key: new Uint8Array(serverKey), allowUnsigned: false };
  let bytes: Buffer;
  afterAll(async () => {
    for (const server of servers) await server.close();
  });
  beforeAll(async () => {
    const server = await createServer({
      ...defaultConfig(),
      logLevel: "silent",
      defaultLanguage: "javascript",
      dataDir: mkdtempSync(join(tmpdir(), "sandbox-envelope-")),
      snapshotKey: serverKey.toString("hex"),
      hibernateAfterMs: null,
    });
    servers.push(server);
    app = server.app;
    await app.ready();
    const run = await app.inject({
      method: "POST",
      url: "/v1/runs",
      payload: { session_id: "h1", language: "javascript", code: CELLS[0].code },
    });
    expect(run.json()).toMatchObject({
      status: "ok",
      result: [42, expect.any(Number), expect.any(Number)],
    });
    const snapshot = await app.inject({ method: "POST", url: "/v1/sessions/h1/snapshot" });
    expect(snapshot.statusCode).toBe(201);
    const download = await app.inject({
      method: "GET",
      url: `/v1/snapshots/${snapshot.json().snapshot_id}`,
    });
    expect(download.headers["content-type"]).toBe("application/octet-stream");
    bytes = download.rawPayload;
  });

  const octets = (url: string, payload: Buffer) =>
    app.inject({
      method: "POST",
      url,
      payload,
      headers: { "content-type": "application/octet-stream" },
    });

  it("refuses damaged uploads and restores with the code's status, and keeps serving", async () => {
    const stored = (await app.inject({ method: "GET", url: "/v1/snapshots" })).json();
    const httpRegions = regionsOf(layoutOf(bytes));
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(flipDamage(httpRegions), cutDamage(bytes.length), appendDamage()),
        async (damage) => {
          const { bytes: damaged, expected } = applyDamage(damage, bytes, httpRegions, httpKeyring);
          const envelope = { error: { code: expected.toLowerCase(), message: expect.any(String) } };
          const upload = await octets("/v1/snapshots", damaged);
          expect(upload.statusCode).toBe(400);
          expect(upload.json()).toEqual(envelope);
          const restore = await octets("/v1/sessions/restore?session_id=h2", damaged);
          expect(restore.statusCode).toBe(400);
          expect(restore.json()).toEqual(envelope);
          const json = await app.inject({
            method: "POST",
            url: "/v1/sessions/restore",
            payload: { snapshot: damaged.toString("base64"), session_id: "h2" },
          });
          expect(json.statusCode).toBe(400);
          expect(json.json()).toEqual(envelope);
        },
      ),
      { numRuns: 30, examples: [[{ kind: "cut", length: 0 }]] },
    );
    expect((await app.inject({ method: "GET", url: "/v1/snapshots" })).json()).toEqual(stored);
    expect(
      (await app.inject({ method: "GET", url: "/v1/sessions" }))
        .json()
        .sessions.map((session: { id: string }) => session.id),
    ).toEqual(["h1"]);
    expect((await app.inject({ method: "GET", url: "/v1/health" })).statusCode).toBe(200);
    const after = await app.inject({
      method: "POST",
      url: "/v1/runs",
      payload: { session_id: "h1", language: "javascript", code: "v + 1" },
    });
    expect(after.json()).toMatchObject({ status: "ok", result: 43 });
    const restored = await octets("/v1/sessions/restore?session_id=h2", bytes);
    expect(restored.statusCode).toBe(201);
    expect(restored.json()).toMatchObject({ session: { id: "h2" }, restored_from: "journal" });
  });

  it("answers 409 for verified snapshots it cannot replay, and 400 for another key", async () => {
    const sealed = (change: (parts: SnapshotParts) => void, sealKey: Uint8Array) =>
      reseal(bytes, httpKeyring, change, sealKey);
    const cases: [string, Buffer, number, string][] = [
      [
        "diverged",
        sealed(({ manifest }) => {
          manifest.journal!.runs[0]!.calls[1]!.reply = { ok: true, valueJson: "41" };
        }, serverKey),
        409,
        "snapshot_diverged",
      ],
      [
        "image of another build (QuickJS restores no image)",
        sealed(({ header, manifest }) => {
          header.kinds = ["image"];
          header.engine = "quickjs (another build)";
          manifest.journal = null;
          manifest.image = { blob: [0, 0], meta: null };
        }, serverKey),
        409,
        "snapshot_incompatible",
      ],
      ["another key", sealed(() => {}, randomBytes(32)), 400, "snapshot_signature_invalid"],
      [
        "format 999",
        sealed(({ header }) => {
          header.format = 999;
        }, serverKey),
        400,
        "snapshot_version_unsupported",
      ],
    ];
    for (const [name, damaged, status, code] of cases) {
      const restore = await octets("/v1/sessions/restore?session_id=h3", damaged);
      expect(restore.statusCode, name).toBe(status);
      expect(restore.json(), name).toEqual({ error: { code, message: expect.any(String) } });
    }
    expect((await app.inject({ method: "GET", url: "/v1/sessions/h3" })).statusCode).toBe(404);
    expect((await app.inject({ method: "GET", url: "/v1/health" })).json()).toMatchObject({
      status: "ok",
    });
    const run = await app.inject({
      method: "POST",
      url: "/v1/runs",
      payload: { session_id: "h1", language: "javascript", code: "v * 2" },
    });
    expect(run.json()).toMatchObject({ status: "ok", result: 84 });
  });
});
