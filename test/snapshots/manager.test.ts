/**
 * Snapshots through the session manager, on real QuickJS sessions: journal replay restores
 * state without calling tools again, workspaces travel along, hibernation evicts and wakes
 * sessions, and refused restores leave nothing behind.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createQuickJsRuntime } from "../../runtimes/quickjs/index.ts";
import {
  createAsyncTool,
  createSyncTool,
  DEFAULT_SESSION_LIMITS,
  MemorySnapshotStore,
  RuntimeRegistry,
  SessionManager,
  type SessionManagerOptions,
  type SnapshotOptions,
  ToolRegistry,
} from "../../src/index.ts";

let runtimes: RuntimeRegistry;
let tools: ToolRegistry;
/** Calls per tool name, to show replays never reach a tool. */
const calls = new Map<string, number>();
const count = (name: string) => calls.get(name) ?? 0;
const managers: SessionManager[] = [];
const key = new Uint8Array(randomBytes(32));

beforeAll(() => {
  runtimes = new RuntimeRegistry();
  runtimes.register(createQuickJsRuntime({ threads: 2 }));
  tools = new ToolRegistry();
  let ticket = 0;
  tools.register(
    createSyncTool({ name: "next_ticket", description: "A new number each call." }, () => {
      calls.set("next_ticket", count("next_ticket") + 1);
      ticket += 1;
      return ticket;
    }),
  );
  tools.register(
    createAsyncTool(
      {
        name: "slow_echo",
        description: "Answers its argument after ms.",
        limits: { timeout_ms: 5_000 },
      },
      async ({ args }) => {
        calls.set("slow_echo", count("slow_echo") + 1);
        await new Promise((resolve) => setTimeout(resolve, args[1] as number));
        return args[0] ?? null;
      },
    ),
  );
});
afterAll(async () => {
  for (const manager of managers) await manager.close();
  await runtimes.close();
});

const ceilings = { ...DEFAULT_SESSION_LIMITS, memory_mb: 128, wall_ms: 10_000, cpu_ms: 5_000 };
function manager(
  snapshots: Partial<SnapshotOptions> = {},
  options: Partial<SessionManagerOptions> = {},
): SessionManager {
  const created = new SessionManager({
    runtimes,
    tools,
    defaults: DEFAULT_SESSION_LIMITS,
    ceilings,
    defaultLanguage: "javascript",
    snapshots: { store: new MemorySnapshotStore(), key, ...snapshots },
    ...options,
  });
  managers.push(created);
  return created;
}
let counter = 0;
const sid = () => `snap${++counter}`;

describe("journal snapshots", () => {
  it("restore elsewhere: same state, clock and randomness as recorded, tools not called again", async () => {
    const a = manager();
    const id = sid();
    const first = await a.run({
      session_id: id,
      code: "var ticket = await next_ticket(); var born = Date.now(); var luck = Math.random(); [ticket, born, luck]",
    });
    expect(first.status).toBe("ok");
    await a.run({
      session_id: id,
      language: "typescript",
      code: "interface Box { n: number }\nconst box: Box = { n: ticket * 10 + scale };",
      inputs: { scale: 3 },
    });
    const failed = await a.run({ session_id: id, code: "var partial = 1; missing_name()" });
    expect(failed.status).toBe("runtime_error");
    const info = await a.snapshotSession(id);
    expect(info).toMatchObject({
      session_id: id,
      backend: "quickjs",
      language: "javascript",
      kinds: ["journal"],
      journal_runs: 3,
    });
    expect(info.snapshot_id).toMatch(/^[0-9a-f]{64}$/);
    const bytes = await a.getSnapshot(info.snapshot_id);
    expect(bytes.byteLength).toBe(info.bytes);

    const ticketsBefore = count("next_ticket");
    const b = manager();
    const restored = await b.restoreSession({ snapshot: bytes, session_id: "copy" });
    expect(restored).toMatchObject({
      snapshot_id: info.snapshot_id,
      restored_from: "journal",
      runtime: "quickjs",
      replayed_runs: 3,
      files: 0,
    });
    expect(restored.session).toMatchObject({ id: "copy", language: "javascript", state: "idle" });
    expect(count("next_ticket")).toBe(ticketsBefore);

    const seen = await b.run({ session_id: "copy", code: "[ticket, born, luck, box.n, partial]" });
    expect(seen.status).toBe("ok");
    const [ticket, born, luck] = first.result as [number, number, number];
    expect(seen.result).toEqual([ticket, born, luck, ticket * 10 + 3, 1]);
    // The restored session goes on with live tools and a live clock.
    const later = await b.run({
      session_id: "copy",
      code: "[await next_ticket(), Date.now() >= born]",
    });
    expect(later.result).toEqual([ticketsBefore + 1, true]);
    expect(count("next_ticket")).toBe(ticketsBefore + 1);
    // Its journal holds the original runs and the new ones.
    expect((await b.snapshotSession("copy")).journal_runs).toBe(5);
  });

  it("return_snapshot answers a stored snapshot's id that restores the state after that run", async () => {
    const m = manager();
    const id = sid();
    const result = await m.run({ session_id: id, code: "var n = 7; n", return_snapshot: true });
    expect(result.status).toBe("ok");
    expect(result.snapshot_id).toMatch(/^[0-9a-f]{64}$/);
    await m.run({ session_id: id, code: "n = 8" });
    const restored = await m.restoreSession({
      snapshot_id: result.snapshot_id!,
      session_id: `${id}-at-7`,
    });
    expect(restored.replayed_runs).toBe(1);
    expect((await m.run({ session_id: `${id}-at-7`, code: "n" })).result).toBe(7);
    expect((await m.run({ session_id: id, code: "n" })).result).toBe(8);
  });

  it("carries workspace files, read-only flags and modification times", async () => {
    const m = manager();
    const id = sid();
    await m.createSession({ session_id: id, language: "javascript" });
    const workspace = m.workspaces.get(id);
    workspace.write("data/in.txt", "hello", { readOnly: true });
    workspace.write("out/result.bin", new Uint8Array([0, 1, 2, 255]));
    const modified = workspace.stat("data/in.txt")!.modifiedAt;
    const info = await m.snapshotSession(id);
    const other = manager();
    const restored = await other.restoreSession({
      snapshot: await m.getSnapshot(info.snapshot_id),
      session_id: `${id}-copy`,
    });
    expect(restored.files).toBe(2);
    expect(restored.session.id).toBe(`${id}-copy`);
    const copy = other.workspaces.get(`${id}-copy`);
    expect(new TextDecoder().decode(copy.read("data/in.txt"))).toBe("hello");
    expect(copy.stat("data/in.txt")).toMatchObject({ readOnly: true, modifiedAt: modified });
    expect([...copy.read("out/result.bin")]).toEqual([0, 1, 2, 255]);
  });

  it("waits for the running run, and snapshots before queued ones", async () => {
    const m = manager();
    const id = sid();
    await m.run({ session_id: id, code: "var steps = ['first']" });
    const slow = m.run({
      session_id: id,
      code: "steps.push(await slow_echo('second', 150)); steps.length",
    });
    await new Promise((resolve) => setTimeout(resolve, 30));
    const snapshot = m.snapshotSession(id);
    const queued = m.run({ session_id: id, code: "steps.push('third'); steps.length" });
    const [slowResult, info, queuedResult] = await Promise.all([slow, snapshot, queued]);
    expect(slowResult.result).toBe(2);
    expect(queuedResult.result).toBe(3);
    expect(info.journal_runs).toBe(2);
    const restored = await m.restoreSession({
      snapshot_id: info.snapshot_id,
      session_id: `${id}-b`,
    });
    expect((await m.run({ session_id: `${id}-b`, code: "steps" })).result).toEqual([
      "first",
      "second",
    ]);
    expect(restored.replayed_runs).toBe(2);
  });

  it("stops journaling at a run a limit or a cancel stopped: where it stopped is not replayable", async () => {
    const m = manager({ hibernateAfterMs: 1_000 });
    const id1 = sid();
    await m.run({ session_id: id1, code: "var n = 0" });
    const stopped = await m.run({ session_id: id1, code: "for (;;) n++", timeout_ms: 100 });
    expect(stopped.status).toBe("timeout");
    await expect(m.snapshotSession(id1)).rejects.toMatchObject({
      code: "SNAPSHOT_NOT_SUPPORTED",
      message: expect.stringContaining("ended timeout"),
    });
    // Such a session is never hibernated: it stays in memory with its state.
    await m.sweep(Date.now() + 5_000);
    expect(m.getSession(id1).state).toBe("idle");
    expect((await m.run({ session_id: id1, code: "n > 0" })).result).toBe(true);

    const id2 = sid();
    await m.run({ session_id: id2, code: "var kept = 1" });
    const running = m.submit({
      session_id: id2,
      code: "await new Promise(() => {})",
      run_id: `${id2}-wait`,
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(m.cancelRun(`${id2}-wait`)).toBe(true);
    expect((await (await running).done).status).toBe("cancelled");
    await expect(m.snapshotSession(id2)).rejects.toMatchObject({ code: "SNAPSHOT_NOT_SUPPORTED" });
  });

  it("refuses restores it cannot do fully, and leaves nothing behind", async () => {
    const m = manager();
    const id = sid();
    await m.createSession({ session_id: id, limits: { memory_mb: 100 } });
    await m.run({ session_id: id, code: "var x = 1" });
    const info = await m.snapshotSession(id);
    await expect(m.restoreSession({ snapshot_id: info.snapshot_id })).rejects.toMatchObject({
      code: "SESSION_EXISTS",
    });
    await expect(m.restoreSession({ snapshot_id: "0".repeat(64) })).rejects.toMatchObject({
      code: "SNAPSHOT_NOT_FOUND",
    });
    await expect(m.restoreSession({})).rejects.toMatchObject({ code: "INVALID_REQUEST" });
    const bytes = await m.getSnapshot(info.snapshot_id);
    const strict = manager({}, { ceilings: { ...ceilings, memory_mb: 64 } });
    await expect(strict.restoreSession({ snapshot: bytes })).rejects.toMatchObject({
      code: "LIMIT_EXCEEDS_CEILING",
    });
    expect(strict.listSessions()).toEqual([]);
    const otherKey = manager({ key: new Uint8Array(randomBytes(32)) });
    await expect(otherKey.restoreSession({ snapshot: bytes })).rejects.toMatchObject({
      code: "SNAPSHOT_SIGNATURE_INVALID",
    });
    expect(otherKey.listSessions()).toEqual([]);
    // The id stays free: the same bytes restore there once acceptable.
    expect((await otherKey.putSnapshot(bytes).catch((error) => error)).code).toBe(
      "SNAPSHOT_SIGNATURE_INVALID",
    );
    const fine = await manager().restoreSession({ snapshot: bytes, session_id: `${id}-b` });
    expect(fine.session).toMatchObject({ id: `${id}-b`, limits: { memory_mb: 100 } });
  });

  it("says why a session cannot be snapshotted once its journal stopped", async () => {
    const m = manager({ maxJournalBytes: 400 });
    const id = sid();
    await m.run({ session_id: id, code: "var small = 1" });
    expect((await m.snapshotSession(id)).journal_runs).toBe(1);
    const big = await m.run({
      session_id: id,
      code: `var big = "${"x".repeat(600)}"; 1`,
      return_snapshot: true,
    });
    expect(big.status).toBe("ok");
    expect(big.snapshot_id).toBeNull();
    expect(big.diagnostics).toContainEqual(
      expect.objectContaining({ severity: "warning", code: "SNAPSHOT_NOT_SUPPORTED" }),
    );
    await expect(m.snapshotSession(id)).rejects.toMatchObject({
      code: "SNAPSHOT_NOT_SUPPORTED",
      message: expect.stringContaining("maxJournalBytes"),
    });
  });

  it("uploads verify before they are stored; deletes free the store", async () => {
    const m = manager();
    const id = sid();
    await m.run({ session_id: id, code: "var y = 2" });
    const info = await m.snapshotSession(id);
    const bytes = await m.getSnapshot(info.snapshot_id);
    const other = manager();
    expect(await other.putSnapshot(bytes)).toEqual(info);
    expect((await other.listSnapshots()).snapshots.map((entry) => entry.snapshot_id)).toEqual([
      info.snapshot_id,
    ]);
    const damaged = Uint8Array.from(bytes);
    const at = damaged.length - 40;
    damaged[at] = damaged[at]! ^ 0xff;
    await expect(other.putSnapshot(damaged)).rejects.toMatchObject({ code: "SNAPSHOT_TAMPERED" });
    expect((await other.listSnapshots()).usage.count).toBe(1);
    await other.deleteSnapshot(info.snapshot_id);
    await expect(other.deleteSnapshot(info.snapshot_id)).rejects.toMatchObject({
      code: "SNAPSHOT_NOT_FOUND",
    });
    expect((await other.listSnapshots()).usage).toMatchObject({ bytes: 0, count: 0 });
  });
});

describe("closing", () => {
  it("a restore under way when the manager closes leaves nothing in the backend", async () => {
    const a = manager();
    const id = sid();
    await a.run({ session_id: id, code: "var v = 1; for (let i = 0; i < 1e5; i++) v += i; v" });
    const bytes = await a.getSnapshot((await a.snapshotSession(id)).snapshot_id);
    const b = manager();
    const restoring = b.restoreSession({ snapshot: bytes, session_id: `${id}-closing` });
    await b.close();
    await restoring.catch(() => null);
    expect(await runtimes.get("quickjs")!.listSessions()).not.toContain(`${id}-closing`);
    expect(b.sessionCount).toBe(0);
  });
});

describe("closing, by snapshot id", () => {
  it("a restore that was reading the store when the manager closed is refused and leaves nothing", async () => {
    class SlowStore extends MemorySnapshotStore {
      override async get(id: string) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        return super.get(id);
      }
    }
    const store = new SlowStore();
    const a = manager({ store });
    const id = sid();
    await a.run({ session_id: id, code: "var v = 1; v" });
    const info = await a.snapshotSession(id);
    const b = manager({ store });
    const restoring = b.restoreSession({ snapshot_id: info.snapshot_id, session_id: `${id}-late` });
    await b.close();
    await expect(restoring).rejects.toMatchObject({ code: "SERVICE_CLOSING" });
    expect(b.sessionCount).toBe(0);
    expect(await runtimes.get("quickjs")!.listSessions()).not.toContain(`${id}-late`);
  });
});

describe("hibernation", () => {
  it("evicts idle sessions past hibernateAfterMs and wakes them on their next run", async () => {
    const store = new MemorySnapshotStore();
    const destroyed: string[] = [];
    const m = manager(
      { store, hibernateAfterMs: 1_000 },
      { onSessionDestroyed: (sessionId) => destroyed.push(sessionId) },
    );
    const id = sid();
    await m.run({ session_id: id, code: "var sleeper = await next_ticket(); sleeper" });
    const ticketsBefore = count("next_ticket");
    await m.sweep(Date.now() + 1_500);
    expect(m.getSession(id).state).toBe("hibernated");
    expect(m.sessionCount).toBe(0);
    expect(m.hibernatedCount).toBe(1);
    expect((await store.usage()).count).toBe(1);
    expect(await runtimes.get("quickjs")!.listSessions()).not.toContain(id);

    const woken = await m.run({ session_id: id, code: "sleeper + 1000" });
    expect(woken.status).toBe("ok");
    expect(woken.result).toBe(
      ((await m.run({ session_id: id, code: "sleeper" })).result as number) + 1000,
    );
    expect(count("next_ticket")).toBe(ticketsBefore);
    expect(m.getSession(id)).toMatchObject({ state: "idle", run_count: 3 });
    // Waking consumed the hibernation snapshot; nobody else held its id.
    expect((await store.usage()).count).toBe(0);
    expect(destroyed).toEqual([]);
  });

  it("expires hibernated sessions at the idle TTL, with their snapshot", async () => {
    const store = new MemorySnapshotStore();
    const destroyed: string[] = [];
    const m = manager(
      { store, hibernateAfterMs: 1_000 },
      { sessionIdleTtlMs: 60_000, onSessionDestroyed: (sessionId) => destroyed.push(sessionId) },
    );
    const id = sid();
    await m.run({ session_id: id, code: "1" });
    expect(await m.hibernateSession(id)).toBe(true);
    await m.sweep(Date.now() + 61_000);
    expect(() => m.getSession(id)).toThrow(expect.objectContaining({ code: "SESSION_NOT_FOUND" }));
    expect((await store.usage()).count).toBe(0);
    expect(destroyed).toEqual([id]);
  });

  it("keeps a hibernated session's snapshot once its id was handed out", async () => {
    const store = new MemorySnapshotStore();
    const m = manager({ store, hibernateAfterMs: 1_000 });
    const id = sid();
    await m.run({ session_id: id, code: "var z = 3" });
    await m.hibernateSession(id);
    const info = await m.snapshotSession(id);
    await expect(m.deleteSnapshot(info.snapshot_id)).rejects.toMatchObject({
      code: "SNAPSHOT_IN_USE",
    });
    expect((await m.run({ session_id: id, code: "z" })).result).toBe(3);
    expect(await store.get(info.snapshot_id)).not.toBeNull();
    await m.destroySession(id);
    expect(await store.get(info.snapshot_id)).not.toBeNull();
  });

  it("destroying a hibernated session removes its snapshot", async () => {
    const store = new MemorySnapshotStore();
    const m = manager({ store, hibernateAfterMs: 1_000 });
    const id = sid();
    await m.run({ session_id: id, code: "1" });
    await m.hibernateSession(id);
    expect((await store.usage()).count).toBe(1);
    await m.destroySession(id);
    expect((await store.usage()).count).toBe(0);
    await expect(m.createSession({ session_id: id })).resolves.toMatchObject({ id });
  });

  it("a snapshot asked for while the session hibernates answers the hibernation snapshot", async () => {
    const m = manager({ hibernateAfterMs: 1_000 });
    const id = sid();
    await m.run({ session_id: id, code: "var v = 5" });
    const [hibernated, info] = await Promise.all([m.hibernateSession(id), m.snapshotSession(id)]);
    expect(hibernated).toBe(true);
    expect(m.getSession(id).state).toBe("hibernated");
    const restored = await m.restoreSession({
      snapshot_id: info.snapshot_id,
      session_id: `${id}-b`,
    });
    expect((await m.run({ session_id: `${id}-b`, code: "v" })).result).toBe(5);
    expect(restored.replayed_runs).toBe(1);
  });

  it("a session that cannot wake for want of room stays hibernated, and wakes later", async () => {
    const m = manager({ hibernateAfterMs: 60_000 }, { maxSessions: 1 });
    const sleeper = sid();
    const busy = sid();
    await m.run({ session_id: sleeper, code: "var kept = 'yes'" });
    const long = m.run({ session_id: busy, code: "await slow_echo(1, 400)" });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(m.getSession(sleeper).state).toBe("hibernated");
    await expect(m.run({ session_id: sleeper, code: "kept" })).rejects.toMatchObject({
      code: "SESSION_LIMIT_REACHED",
    });
    expect(m.getSession(sleeper).state).toBe("hibernated");
    await long;
    expect((await m.run({ session_id: sleeper, code: "kept" })).result).toBe("yes");
  });

  it("first runs racing to create one session all run in it, while room is made by hibernating", async () => {
    const m = manager({ hibernateAfterMs: 60_000 }, { maxSessions: 1 });
    const sleeper = sid();
    const fresh = sid();
    await m.run({ session_id: sleeper, code: "var kept = 'yes'" });
    const racing = await Promise.all(
      [1, 2, 3].map((n) =>
        m.run({ session_id: fresh, code: `globalThis.seen = (globalThis.seen ?? 0) + ${n}; seen` }),
      ),
    );
    expect(racing.map((result) => result.status)).toEqual(["ok", "ok", "ok"]);
    // One session ran all three, one after another (in whichever order they were queued):
    // the values seen are the running sums of 1, 2 and 3 in some order.
    const seen = racing.map((result) => result.result as number).sort((a, b) => a - b);
    const steps = seen.map((value, i) => value - (i === 0 ? 0 : seen[i - 1]!));
    expect(steps.sort()).toEqual([1, 2, 3]);
    expect(m.getSession(fresh)).toMatchObject({ state: "idle", run_count: 3 });
    expect(m.getSession(sleeper).state).toBe("hibernated");
  });

  it("a first run that finds its session being made by another still gets its own limits", async () => {
    const m = manager();
    const id = sid();
    const [first, limited] = await Promise.all([
      m.run({ session_id: id, code: "1" }),
      m.run({ session_id: id, code: "await next_ticket()", limits: { max_external_calls: 0 } }),
    ]);
    expect(first.status).toBe("ok");
    expect(limited.status).toBe("resource_exhausted");
    expect(limited.external_calls.map((call) => call.status)).toEqual(["denied"]);
  });

  it("a session whose snapshot no longer restores answers why, until it is destroyed", async () => {
    const store = new MemorySnapshotStore();
    const m = manager({ store, hibernateAfterMs: 1_000 });
    const id = sid();
    await m.run({ session_id: id, code: "var lost = 1" });
    await m.hibernateSession(id);
    for (const entry of (await store.list()).map((item) => item.id)) await store.delete(entry);
    for (let attempt = 0; attempt < 2; attempt++) {
      const refused = await m.run({ session_id: id, code: "typeof lost" });
      expect(refused.status).toBe("validation_error");
      expect(refused.error).toMatchObject({
        code: "SNAPSHOT_NOT_FOUND",
        message: expect.stringContaining("could not be woken"),
      });
    }
    expect(m.getSession(id).state).toBe("hibernated");
    await m.destroySession(id);
    expect((await m.run({ session_id: id, code: "typeof lost" })).result).toBe("undefined");
  });
});
