/**
 * Sessions outlive the server process: real server processes on one data dir with one
 * SANDBOX_SNAPSHOT_KEY, stopped and started again.
 *
 * - A graceful shutdown (SIGTERM) hibernates idle sessions; the next server takes them back
 *   and they wake on their next run with their state, without calling a tool again.
 * - A crash (SIGKILL) keeps the sessions that had hibernated before it (idle ones, after
 *   SANDBOX_HIBERNATE_AFTER_MS); the live ones are gone.
 * - A server with another key, or with a damaged index, starts and serves; what it cannot
 *   take back is reported, never half-restored.
 */
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  type Host,
  killAllHosts,
  request,
  run,
  STARTUP_MS,
  startHost,
  stopHost,
} from "./server-process.ts";

const started: Host[] = [];
async function start(name: string, key: string, dataDir?: string, env?: Record<string, string>) {
  const host = await startHost(name, key, { dataDir, env });
  started.push(host);
  return host;
}

afterAll(async () => {
  await Promise.all(started.map((host) => stopHost(host)));
  killAllHosts();
});

/** The index file's session ids. */
function indexedIds(dataDir: string): string[] {
  const index = JSON.parse(readFileSync(join(dataDir, "hibernated.json"), "utf8"));
  expect(index.format).toBe(1);
  return index.sessions.map((session: { meta: { id: string } }) => session.meta.id).sort();
}

describe("sessions outlive a restart", () => {
  const key = randomBytes(32).toString("hex");

  it(
    "a graceful shutdown hibernates idle sessions; the next server wakes them with their state",
    async () => {
      const first = await start("first", key);
      expect(await run(first, "kept", 'await kv_set("k", 7); var v = await kv_get("k"); v')).toBe(
        7,
      );
      expect(await run(first, "kept", "var seen = [v * 6, Math.random()]; seen[0]")).toBe(42);
      const random = (await run(first, "kept", "seen[1]")) as number;
      expect(await run(first, "other", "globalThis.label = 'b'; label")).toBe("b");
      // A destroyed session does not come back.
      expect(await run(first, "gone", "1")).toBe(1);
      expect((await request(first, "DELETE", "/v1/sessions/gone")).status).toBe(200);

      expect(await stopHost(first)).toBe(0);
      expect(indexedIds(first.dataDir)).toEqual(["kept", "other"]);

      const second = await start("second", key, first.dataDir);
      const listed = await request(second, "GET", "/v1/sessions");
      expect(
        listed.json.sessions
          .map((session: { id: string; state: string }) => [session.id, session.state])
          .sort(),
      ).toEqual([
        ["kept", "hibernated"],
        ["other", "hibernated"],
      ]);
      expect((await request(second, "GET", "/v1/sessions/kept")).json).toMatchObject({
        id: "kept",
        state: "hibernated",
        run_count: 3,
      });
      // Its state, with the random value it drew; the replay answered kv from the journal,
      // so this server's kv store (empty) never saw kv_set.
      expect(await run(second, "kept", "[v, seen[0], seen[1]]")).toEqual([7, 42, random]);
      expect(await run(second, "kept", 'await kv_get("k")')).toBeNull();
      expect(await run(second, "other", "label")).toBe("b");
      expect((await request(second, "GET", "/v1/sessions/gone")).status).toBe(404);
      // Woken sessions leave the index.
      await expect.poll(() => indexedIds(first.dataDir)).toEqual([]);
      expect(await stopHost(second)).toBe(0);
    },
    3 * STARTUP_MS,
  );

  it(
    "a crash keeps the sessions that had hibernated; live ones are lost",
    async () => {
      const crashing = await start("crashing", key, undefined, {
        SANDBOX_HIBERNATE_AFTER_MS: "1000",
      });
      expect(await run(crashing, "idle", "var n = 5; n")).toBe(5);
      await expect
        .poll(async () => (await request(crashing, "GET", "/v1/sessions/idle")).json.state, {
          timeout: 10_000,
          interval: 100,
        })
        .toBe("hibernated");
      expect(await run(crashing, "live", "var m = 6; m")).toBe(6);
      expect(await stopHost(crashing, "SIGKILL")).toBe("SIGKILL");

      const after = await start("after-crash", key, crashing.dataDir);
      expect(await run(after, "idle", "n * 2")).toBe(10);
      const live = await request(after, "GET", "/v1/sessions/live");
      expect(live.status).toBe(404);
    },
    3 * STARTUP_MS,
  );

  it(
    "a server with another key or a damaged index starts, serves and says what it could not take back",
    async () => {
      const owner = await start("owner", key);
      expect(await run(owner, "mine", "var x = 1; x")).toBe(1);
      expect(await stopHost(owner)).toBe(0);
      expect(indexedIds(owner.dataDir)).toEqual(["mine"]);

      // Another key: the session is listed, but its snapshot does not verify. It says so and
      // stays (its snapshot kept) until destroyed; nothing starts over empty under its id.
      const stranger = await start("stranger", randomBytes(32).toString("hex"), owner.dataDir);
      const refused = await request(stranger, "POST", "/v1/runs", {
        session_id: "mine",
        code: "x",
      });
      expect(refused.json).toMatchObject({
        status: "validation_error",
        error: { code: "SNAPSHOT_SIGNATURE_INVALID" },
      });
      expect(await run(stranger, "fresh", "2")).toBe(2);
      expect((await request(stranger, "DELETE", "/v1/sessions/mine")).status).toBe(200);
      expect(await run(stranger, "mine", "typeof x")).toBe("undefined");
      await stopHost(stranger, "SIGKILL");

      // A damaged index: the server starts empty and serves.
      writeFileSync(join(owner.dataDir, "hibernated.json"), '{"format": 1, "sessions": [{"me');
      const damaged = await start("damaged", key, owner.dataDir);
      expect((await request(damaged, "GET", "/v1/sessions")).json.sessions).toEqual([]);
      expect(await run(damaged, "new", "3")).toBe(3);
    },
    4 * STARTUP_MS,
  );
});
