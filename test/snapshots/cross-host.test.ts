/**
 * Snapshots across hosts, end to end: real server processes (`node src/cli.ts serve`), each
 * with its own data directory. A and B share a SANDBOX_SNAPSHOT_KEY; C has another.
 *
 * A session built on A — a kv tool call, a TypeScript cell, the clock and `Math.random` — is
 * snapshotted, downloaded, uploaded to B and restored there. B's session holds A's state: the
 * tool's answer, the very clock and random values A read. B's own kv store stays empty for
 * that session, so B's kv handler never ran while the journal replayed. C, with another
 * key, refuses the same bytes.
 */
import { createHash, randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Host,
  killAllHosts,
  request,
  run,
  STARTUP_MS,
  startHost,
  stopHost,
} from "./server-process.ts";

const hosts: Host[] = [];
const sharedKey = randomBytes(32).toString("hex");
let a: Host;
let b: Host;
let c: Host;

beforeAll(async () => {
  const started = await Promise.allSettled([
    startHost("a", sharedKey),
    startHost("b", sharedKey),
    startHost("c", randomBytes(32).toString("hex")),
  ]);
  for (const result of started) if (result.status === "fulfilled") hosts.push(result.value);
  const failed = started.find((result) => result.status === "rejected");
  if (failed) throw failed.reason;
  [a, b, c] = hosts as [Host, Host, Host];
}, STARTUP_MS + 5_000);

afterAll(async () => {
  await Promise.all(hosts.map((host) => stopHost(host)));
  killAllHosts();
});

describe("a snapshot taken on one host restores on another", () => {
  /** What A's session answered, to compare with B. */
  let seen: { t: number; r: number; d: string; total: number };
  let snapshotId: string;
  let bytes: Buffer;

  it("builds a session on A with a tool call, a TypeScript cell, the clock and randomness", async () => {
    expect(await run(a, "travel", 'await kv_set("k", 42); var v = await kv_get("k"); v')).toBe(42);
    const total = await run(
      a,
      "travel",
      "interface Point { x: number; y: number }\nconst p: Point = { x: v, y: 1 };\nvar total: number = p.x + p.y;\ntotal",
      "typescript",
    );
    expect(total).toBe(43);
    const [t, r, d] = (await run(
      a,
      "travel",
      "var t = Date.now(); var r = Math.random(); var d = new Date().toISOString(); [t, r, d]",
    )) as [number, number, string];
    expect(t).toBeGreaterThan(0);
    expect(r).toBeGreaterThanOrEqual(0);
    expect(r).toBeLessThan(1);
    seen = { t, r, d, total: total as number };
  });

  it("snapshots on A and downloads the bytes", async () => {
    const snapshot = await request(a, "POST", "/v1/sessions/travel/snapshot");
    expect(snapshot.status).toBe(201);
    expect(snapshot.json).toMatchObject({
      session_id: "travel",
      backend: "quickjs",
      kinds: ["journal"],
      journal_runs: 3,
    });
    snapshotId = snapshot.json.snapshot_id;
    const download = await request(a, "GET", `/v1/snapshots/${snapshotId}`);
    expect(download.status).toBe(200);
    bytes = download.bytes;
    expect(bytes.subarray(0, 8).toString("ascii")).toBe("SANDSNAP");
    // The id is the SHA3-256 of the bytes before the digest: it is the 32 bytes stored there.
    const bodyEnd = bytes.length - 1 - 32 - 32;
    expect(createHash("sha3-256").update(bytes.subarray(0, bodyEnd)).digest("hex")).toBe(
      snapshotId,
    );
  });

  it("uploads to B and restores the session there without calling a tool", async () => {
    expect((await request(b, "GET", "/v1/sessions/travel")).status).toBe(404);
    const upload = await request(b, "POST", "/v1/snapshots", bytes);
    expect(upload.status).toBe(201);
    expect(upload.json).toMatchObject({ snapshot_id: snapshotId, bytes: bytes.length });
    const listed = await request(b, "GET", "/v1/snapshots");
    expect(
      listed.json.snapshots.map((entry: { snapshot_id: string }) => entry.snapshot_id),
    ).toEqual([snapshotId]);

    const restore = await request(b, "POST", "/v1/sessions/restore", { snapshot_id: snapshotId });
    expect(restore.status).toBe(201);
    expect(restore.json).toMatchObject({
      session: { id: "travel", language: "javascript" },
      snapshot_id: snapshotId,
      restored_from: "journal",
      runtime: "quickjs",
      replayed_runs: 3,
    });

    // A's state, with the clock and random values A read, exactly.
    expect(await run(b, "travel", "[v, total, t, r, d]")).toEqual([
      42,
      seen.total,
      seen.t,
      seen.r,
      seen.d,
    ]);
    // B's kv store never saw kv_set("k", 42): the replay answered from the journal.
    expect(await run(b, "travel", 'await kv_get("k")')).toBeNull();
    // A's store did.
    expect(await run(a, "travel", 'await kv_get("k")')).toBe(42);
  });

  it("restores the raw bytes on B under another session id", async () => {
    const restore = await request(b, "POST", "/v1/sessions/restore?session_id=other", bytes);
    expect(restore.status).toBe(201);
    expect(restore.json).toMatchObject({
      session: { id: "other" },
      snapshot_id: snapshotId,
      restored_from: "journal",
      replayed_runs: 3,
    });
    expect(await run(b, "other", "[v, total, t, r]")).toEqual([42, seen.total, seen.t, seen.r]);
    expect(await run(b, "other", 'await kv_get("k")')).toBeNull();
    const sessions = await request(b, "GET", "/v1/sessions");
    expect(sessions.json.sessions.map((session: { id: string }) => session.id).sort()).toEqual([
      "other",
      "travel",
    ]);
  });

  it("a host with another key refuses the bytes: snapshot_signature_invalid", async () => {
    const refused = {
      status: 400,
      json: { error: { code: "snapshot_signature_invalid", message: expect.any(String) } },
    };
    expect(await request(c, "POST", "/v1/snapshots", bytes)).toMatchObject(refused);
    expect(await request(c, "POST", "/v1/sessions/restore?session_id=travel", bytes)).toMatchObject(
      refused,
    );
    expect(
      await request(c, "POST", "/v1/sessions/restore", { snapshot: bytes.toString("base64") }),
    ).toMatchObject(refused);
    expect((await request(c, "GET", "/v1/snapshots")).json.snapshots).toEqual([]);
    expect((await request(c, "GET", "/v1/sessions")).json.sessions).toEqual([]);
    expect((await request(c, "GET", "/v1/health")).status).toBe(200);
  });
});
