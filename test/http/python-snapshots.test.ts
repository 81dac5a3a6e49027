/**
 * Python snapshots over HTTP (`app.inject()`): `return_snapshot` on a Python run, the
 * snapshot's bytes, and restores by id and by bytes — from the image on a server with the
 * same Pyodide build, from the journal on a server with another (another preload list is
 * another base image). Both servers share a snapshot key, as hosts that exchange snapshots do.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_PRELOAD_MODULES, type PyodideRuntime } from "../../runtimes/pyodide/index.ts";
import { defaultConfig } from "../../src/config.ts";
import { createServer, type SandboxServer } from "../../src/server.ts";

const PYODIDE = new URL("../../runtimes/pyodide/index.ts", import.meta.url).pathname;
const snapshotKey = randomBytes(32).toString("hex");
const servers: SandboxServer[] = [];

async function serve(pyodideOptions: Record<string, unknown>): Promise<FastifyInstance> {
  const config = defaultConfig();
  const server = await createServer({
    ...config,
    logLevel: "silent",
    defaultLanguage: "python",
    dataDir: mkdtempSync(join(tmpdir(), "sandbox-py-snapshots-")),
    snapshotKey,
    runtimes: [{ module: PYODIDE, options: { poolSize: 2, ...pyodideOptions } }],
  });
  servers.push(server);
  await server.app.ready();
  // The other build's base image is built here, not inside a test's time.
  await (server.runtimes.get("pyodide") as PyodideRuntime).warmUp();
  return server.app;
}

let a: FastifyInstance;
let b: FastifyInstance;
beforeAll(async () => {
  [a, b] = await Promise.all([
    serve({}),
    serve({ preloadModules: DEFAULT_PRELOAD_MODULES.filter((name) => name !== "csv") }),
  ]);
}, 120_000);
afterAll(async () => {
  for (const server of servers) await server.close();
});

const post = (app: FastifyInstance, url: string, payload: unknown) =>
  app.inject({ method: "POST", url, payload: payload as object });

describe("Python snapshots over HTTP", () => {
  it("return_snapshot, then restore by id from the image and by bytes from the journal", async () => {
    const first = await post(a, "/v1/runs", {
      session_id: "http-py-snap",
      code: 'import random, time\nkv_set("owner", "a")\nstarted = time.time()\nluck = random.random()\n[started, luck]',
    });
    expect(first.json()).toMatchObject({ status: "ok" });
    const second = await post(a, "/v1/runs", {
      session_id: "http-py-snap",
      code: 'owner = kv_get("owner")\nowner',
      return_snapshot: true,
    });
    expect(second.json()).toMatchObject({ status: "ok", result: "a" });
    const snapshotId = second.json().snapshot_id as string;
    expect(snapshotId).toMatch(/^[0-9a-f]{64}$/);
    const probe = "[started, luck, owner]";
    const expected = [...(first.json().result as unknown[]), "a"];

    const byId = await post(a, "/v1/sessions/restore", {
      snapshot_id: snapshotId,
      session_id: "http-py-image",
    });
    expect(byId.statusCode).toBe(201);
    expect(byId.json()).toMatchObject({
      restored_from: "image",
      runtime: "pyodide",
      replayed_runs: 0,
      session: { id: "http-py-image", language: "python" },
    });
    const fromImage = await post(a, "/v1/runs", { session_id: "http-py-image", code: probe });
    expect(fromImage.json()).toMatchObject({ status: "ok", result: expected });

    const download = await a.inject({ method: "GET", url: `/v1/snapshots/${snapshotId}` });
    expect(download.statusCode).toBe(200);
    expect(download.headers["content-type"]).toContain("application/octet-stream");
    const byBytes = await b.inject({
      method: "POST",
      url: "/v1/sessions/restore?session_id=http-py-journal",
      headers: { "content-type": "application/octet-stream" },
      payload: download.rawPayload,
    });
    expect(byBytes.statusCode).toBe(201);
    expect(byBytes.json()).toMatchObject({ restored_from: "journal", replayed_runs: 2 });
    const fromJournal = await post(b, "/v1/runs", { session_id: "http-py-journal", code: probe });
    expect(fromJournal.json()).toMatchObject({ status: "ok", result: expected });
    // B's kv store never saw the replayed kv_set: the journal answered it.
    const bStore = await post(b, "/v1/runs", { session_id: "b-own", code: 'kv_get("owner")' });
    expect(bStore.json()).toMatchObject({ status: "ok", result: null });
  });

  it("lists pyodide with journal and image snapshots, and its base image in the engine", async () => {
    const listed = (await a.inject({ method: "GET", url: "/v1/runtimes" })).json();
    const pyodide = listed.runtimes.find((runtime: { id: string }) => runtime.id === "pyodide");
    expect(pyodide.snapshotKinds).toEqual(["journal", "image"]);
    expect(pyodide.engine).toMatch(/; base image [0-9a-f]{20}\)$/);
    const other = (await b.inject({ method: "GET", url: "/v1/runtimes" })).json();
    expect(other.runtimes[0].engine).not.toBe(pyodide.engine);
  });
});
