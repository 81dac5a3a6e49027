/**
 * The hibernation index (src/session/hibernation-index.ts) and what a session manager does
 * with it: the file round-trips, damaged records are dropped and counted, and a manager
 * started on the store of one that closed takes back its hibernated sessions — except those
 * expired (their snapshots go too), those whose snapshot is gone and ids already in use.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createQuickJsRuntime } from "../../runtimes/quickjs/index.ts";
import {
  DEFAULT_SESSION_LIMITS,
  FsHibernationIndex,
  type HibernationIndex,
  MemorySnapshotStore,
  RuntimeRegistry,
  SessionManager,
  ToolRegistry,
} from "../../src/index.ts";

let runtimes: RuntimeRegistry;
const managers: SessionManager[] = [];
const key = new Uint8Array(randomBytes(32));

beforeAll(() => {
  runtimes = new RuntimeRegistry();
  runtimes.register(createQuickJsRuntime({ threads: 1 }));
});
afterAll(async () => {
  for (const manager of managers) await manager.close();
  await runtimes.close();
});

const tempFile = () => join(mkdtempSync(join(tmpdir(), "hibernation-index-")), "hibernated.json");

function manager(
  store: MemorySnapshotStore,
  index: FsHibernationIndex,
  options: { idleTtlMs?: number; hibernateOnCloseMs?: number } = {},
): SessionManager {
  const created = new SessionManager({
    runtimes,
    tools: new ToolRegistry(),
    defaults: DEFAULT_SESSION_LIMITS,
    ceilings: DEFAULT_SESSION_LIMITS,
    defaultLanguage: "javascript",
    sessionIdleTtlMs: options.idleTtlMs ?? 3_600_000,
    snapshots: {
      store,
      key,
      hibernationIndex: index,
      hibernateOnCloseMs: options.hibernateOnCloseMs ?? 10_000,
    },
  });
  managers.push(created);
  return created;
}

const record = (id: string, snapshotId = "a".repeat(64)) => ({
  meta: {
    id,
    created_at: 1_000,
    last_used_at: 2_000,
    language: "javascript",
    limits: { ...DEFAULT_SESSION_LIMITS },
    snapshot_version: 1,
  },
  runtime: "quickjs",
  allowed_side_effects: ["none", "read"],
  run_count: 3,
  snapshot_id: snapshotId,
  shared: false,
  broken: null,
});

describe("FsHibernationIndex", () => {
  it("saves and loads records; a missing file is an empty index", async () => {
    const index = new FsHibernationIndex(tempFile());
    expect(await index.load()).toEqual({ sessions: [], rejected: 0 });
    const broken = { code: "SNAPSHOT_DIVERGED" as const, message: "it diverged" };
    const session = {
      meta: { ...record("one").meta, language: "javascript" as const },
      runtimeId: "quickjs",
      allowedSideEffects: ["none" as const],
      runCount: 2,
      snapshotId: "b".repeat(64),
      shared: true,
      broken,
    };
    await index.save([session]);
    expect(await index.load()).toEqual({ sessions: [session], rejected: 0 });
    await index.save([]);
    expect(await index.load()).toEqual({ sessions: [], rejected: 0 });
  });

  it("drops and counts records that do not parse, keeping the rest", async () => {
    const path = tempFile();
    writeFileSync(
      path,
      JSON.stringify({
        format: 1,
        sessions: [
          record("good"),
          record("../escape"),
          { ...record("bad-limits"), meta: { ...record("x").meta, limits: { memory_mb: -1 } } },
          { ...record("bad-digest"), snapshot_id: "not hex" },
          { ...record("bad-code"), broken: { code: "NO_SUCH_CODE", message: "" } },
          { ...record("extra"), surprise: true },
          record("good"),
          "text",
        ],
      }),
    );
    const loaded = await new FsHibernationIndex(path).load();
    expect(loaded.sessions.map((session) => session.meta.id)).toEqual(["good"]);
    expect(loaded.rejected).toBe(7);
  });

  it("rejects a damaged file or another format whole", async () => {
    const path = tempFile();
    for (const text of ["{", "[]", "null", JSON.stringify({ format: 2, sessions: [] })]) {
      writeFileSync(path, text);
      expect(await new FsHibernationIndex(path).load()).toEqual({ sessions: [], rejected: 1 });
    }
  });
});

describe("a session manager and its hibernation index", () => {
  it("close hibernates idle sessions; the next manager takes them back and wakes them on use", async () => {
    const store = new MemorySnapshotStore();
    const path = tempFile();
    const first = manager(store, new FsHibernationIndex(path));
    expect((await first.run({ session_id: "alpha", code: "var a = 40; a" })).result).toBe(40);
    expect((await first.run({ session_id: "beta", code: "var b = 'x'; b" })).result).toBe("x");
    await first.close();
    const saved = JSON.parse(readFileSync(path, "utf8"));
    expect(saved.sessions.map((entry: { meta: { id: string } }) => entry.meta.id).sort()).toEqual([
      "alpha",
      "beta",
    ]);

    const second = manager(store, new FsHibernationIndex(path));
    expect(await second.resumeHibernated()).toEqual({
      resumed: 2,
      expired: 0,
      missing: 0,
      rejected: 0,
    });
    expect(second.getSession("alpha")).toMatchObject({ state: "hibernated", run_count: 1 });
    expect((await second.run({ session_id: "alpha", code: "a + 2" })).result).toBe(42);
    expect(second.getSession("alpha")).toMatchObject({ state: "idle", run_count: 2 });
    expect((await second.run({ session_id: "beta", code: "b" })).result).toBe("x");
  });

  it("drops expired records with their snapshots, and records whose snapshot is gone", async () => {
    const store = new MemorySnapshotStore();
    const path = tempFile();
    const first = manager(store, new FsHibernationIndex(path));
    await first.run({ session_id: "old", code: "1" });
    await first.run({ session_id: "lost", code: "2" });
    await first.run({ session_id: "fine", code: "var f = 3" });
    await first.close();
    const saved = JSON.parse(readFileSync(path, "utf8")) as {
      sessions: { meta: { id: string; last_used_at: number }; snapshot_id: string }[];
    };
    const byId = new Map(saved.sessions.map((entry) => [entry.meta.id, entry]));
    // "old" was last used long ago; "lost"'s snapshot left the store.
    byId.get("old")!.meta.last_used_at = Date.now() - 2 * 3_600_000;
    writeFileSync(path, JSON.stringify(saved));
    expect(await store.delete(byId.get("lost")!.snapshot_id)).toBe(true);

    const second = manager(store, new FsHibernationIndex(path));
    expect(await second.resumeHibernated()).toEqual({
      resumed: 1,
      expired: 1,
      missing: 1,
      rejected: 0,
    });
    expect(await store.get(byId.get("old")!.snapshot_id)).toBeNull();
    expect(() => second.getSession("old")).toThrow(/No session/);
    expect((await second.run({ session_id: "fine", code: "f" })).result).toBe(3);
    // The index now names only what this manager holds hibernated.
    await second.close();
  });

  it("refuses a record whose id is already in use", async () => {
    const store = new MemorySnapshotStore();
    const path = tempFile();
    const first = manager(store, new FsHibernationIndex(path));
    await first.run({ session_id: "twice", code: "var t = 'old'" });
    await first.close();
    const second = manager(store, new FsHibernationIndex(path));
    await second.run({ session_id: "twice", code: "var t = 'new'" });
    expect((await second.resumeHibernated()).rejected).toBe(1);
    expect((await second.run({ session_id: "twice", code: "t" })).result).toBe("new");
  });

  it("a session waking when the manager closes stays hibernated, with its snapshot and record", async () => {
    const store = new MemorySnapshotStore();
    const path = tempFile();
    const first = manager(store, new FsHibernationIndex(path));
    await first.run({ session_id: "waking", code: "var kept = 42; kept" });
    expect(await first.hibernateSession("waking")).toBe(true);
    // Its next run wakes it; the manager closes meanwhile.
    const run = first.run({ session_id: "waking", code: "kept" }).catch((error) => error);
    await first.close();
    expect(await run).toMatchObject({ code: "SERVICE_CLOSING" });
    const saved = await new FsHibernationIndex(path).load();
    expect(saved.sessions.map((session) => session.meta.id)).toEqual(["waking"]);
    expect(await store.get(saved.sessions[0]!.snapshotId)).not.toBeNull();

    const second = manager(store, new FsHibernationIndex(path));
    expect((await second.resumeHibernated()).resumed).toBe(1);
    expect((await second.run({ session_id: "waking", code: "kept" })).result).toBe(42);
  });

  it("a change landing as an index write ends is written too, whatever the timing", async () => {
    for (let gap = 0; gap < 12; gap++) {
      const saves: string[][] = [];
      let hold: Promise<void> | null = null;
      let release = () => {};
      const index: HibernationIndex = {
        load: async () => ({ sessions: [], rejected: 0 }),
        save: async (sessions) => {
          saves.push(sessions.map((session) => session.meta.id));
          if (hold) await hold;
        },
      };
      const m = new SessionManager({
        runtimes,
        tools: new ToolRegistry(),
        defaults: DEFAULT_SESSION_LIMITS,
        ceilings: DEFAULT_SESSION_LIMITS,
        defaultLanguage: "javascript",
        snapshots: { store: new MemorySnapshotStore(), key, hibernationIndex: index },
      });
      managers.push(m);
      await m.run({ session_id: "s1", code: "1" });
      await m.run({ session_id: "s2", code: "2" });
      await m.hibernateSession("s2");
      await new Promise((resolve) => setTimeout(resolve, 10));
      hold = new Promise<void>((resolve) => {
        release = resolve;
      });
      // Its write of [s2, s1] is held; s2 goes `gap` microtasks after it is let go.
      await m.hibernateSession("s1");
      const releasing = release;
      hold = null;
      releasing();
      for (let i = 0; i < gap; i++) await Promise.resolve();
      await m.destroySession("s2");
      await m.close();
      expect(saves.at(-1), `gap ${gap}`).toEqual(["s1"]);
    }
  });

  it("with hibernateOnCloseMs 0, close destroys sessions and the index stays empty", async () => {
    const store = new MemorySnapshotStore();
    const path = tempFile();
    const first = manager(store, new FsHibernationIndex(path), { hibernateOnCloseMs: 0 });
    await first.run({ session_id: "ephemeral", code: "1" });
    await first.close();
    expect(await new FsHibernationIndex(path).load()).toEqual({ sessions: [], rejected: 0 });
  });
});
