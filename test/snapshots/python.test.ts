/**
 * Python sessions through the session manager: snapshots hold a journal and a Pyodide
 * image. On the same build the image restores without replaying anything; on another build
 * (another base image) the journal is replayed with the clock, randomness and tool replies
 * pinned to what was recorded; tools are never called again. Real Pyodide on both sides.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createPyodideRuntime,
  DEFAULT_PRELOAD_MODULES,
  type PyodideRuntime,
} from "../../runtimes/pyodide/index.ts";
import {
  createSyncTool,
  DEFAULT_SESSION_LIMITS,
  MemorySnapshotStore,
  RuntimeRegistry,
  SessionManager,
  type SnapshotOptions,
  ToolRegistry,
} from "../../src/index.ts";

let tickets = 0;
const tools = new ToolRegistry();
tools.register(
  createSyncTool({ name: "next_ticket", description: "A new number each call." }, () => {
    tickets += 1;
    return 100 + tickets;
  }),
);

/** This build, and another: the same Pyodide with another preload list is another base image. */
let here: RuntimeRegistry;
let elsewhere: RuntimeRegistry;
let herePyodide: PyodideRuntime;
let elsewherePyodide: PyodideRuntime;
const managers: SessionManager[] = [];
const key = new Uint8Array(randomBytes(32));

beforeAll(async () => {
  herePyodide = createPyodideRuntime({ poolSize: 2 });
  elsewherePyodide = createPyodideRuntime({
    poolSize: 1,
    preloadModules: DEFAULT_PRELOAD_MODULES.filter((name) => name !== "csv"),
  });
  here = new RuntimeRegistry();
  here.register(herePyodide);
  elsewhere = new RuntimeRegistry();
  elsewhere.register(elsewherePyodide);
  await Promise.all([herePyodide.warmUp(2), elsewherePyodide.warmUp(1)]);
}, 120_000);
afterAll(async () => {
  for (const manager of managers) await manager.close();
  await here?.close();
  await elsewhere?.close();
});

function manager(runtimes: RuntimeRegistry, snapshots: Partial<SnapshotOptions> = {}) {
  const created = new SessionManager({
    runtimes,
    tools,
    defaults: DEFAULT_SESSION_LIMITS,
    ceilings: { ...DEFAULT_SESSION_LIMITS, wall_ms: 30_000 },
    defaultLanguage: "python",
    snapshots: { store: new MemorySnapshotStore(), key, ...snapshots },
  });
  managers.push(created);
  return created;
}

/** Cells that read a tool, the clock and every kind of randomness. */
const CELLS = [
  "import datetime, random, secrets, time, uuid\nticket = next_ticket()\nborn = time.time()\nluck = random.random()",
  "ident = str(uuid.uuid4())\ntoken = secrets.token_hex(8)\nwhen = datetime.datetime.now().isoformat()\nopen('/tmp/log.txt', 'w').write(when)",
  "class Counter:\n    def __init__(self): self.n = 0\n    def bump(self):\n        self.n += 1\n        return self.n\ncounter = Counter()\ncounter.bump()",
];
const PROBE = "[ticket, born, luck, ident, token, when, open('/tmp/log.txt').read(), counter.n]";

async function built(m: SessionManager, id: string) {
  for (const code of CELLS) {
    const result = await m.run({ session_id: id, code });
    expect(result.status).toBe("ok");
  }
  return (await m.run({ session_id: id, code: PROBE })).result as unknown[];
}

describe("Python snapshots through the session manager", () => {
  it("restore from the image on the same build: nothing replayed, tools not called, the journal kept", async () => {
    const a = manager(here);
    const before = await built(a, "py-image");
    const info = await a.snapshotSession("py-image");
    expect(info).toMatchObject({
      backend: "pyodide",
      kinds: ["journal", "image"],
      journal_runs: 4,
    });
    // A delta against the base image and a four-run journal: far under the 8 MB target.
    expect(info.bytes).toBeLessThan(1_048_576);
    const calls = tickets;

    const b = manager(here);
    const restored = await b.restoreSession({
      snapshot: await a.getSnapshot(info.snapshot_id),
      session_id: "py-image-copy",
    });
    expect(restored).toMatchObject({
      restored_from: "image",
      runtime: "pyodide",
      replayed_runs: 0,
    });
    expect(tickets).toBe(calls);
    expect((await b.run({ session_id: "py-image-copy", code: PROBE })).result).toEqual(before);
    const later = await b.run({
      session_id: "py-image-copy",
      code: "[next_ticket(), time.time() >= born, counter.bump()]",
    });
    expect(later.result).toEqual([101 + calls, true, 2]);
    // The journal came along: a snapshot of the copy replays from the very first run.
    expect((await b.snapshotSession("py-image-copy")).journal_runs).toBe(6);
  });

  it("replay the journal on another build: the same clock, randomness and tool replies", async () => {
    const a = manager(here);
    const before = await built(a, "py-journal");
    const bytes = await a.getSnapshot((await a.snapshotSession("py-journal")).snapshot_id);
    const calls = tickets;

    const b = manager(elsewhere);
    const restored = await b.restoreSession({ snapshot: bytes, session_id: "py-journal-copy" });
    expect(restored).toMatchObject({ restored_from: "journal", replayed_runs: 4 });
    expect(tickets).toBe(calls);
    expect((await b.run({ session_id: "py-journal-copy", code: PROBE })).result).toEqual(before);
    const later = await b.run({ session_id: "py-journal-copy", code: "next_ticket()" });
    expect(later.result).toBe(101 + calls);
  });

  it("snapshot a session an image cannot carry as a journal, and replay it", async () => {
    const a = manager(here);
    await a.run({
      session_id: "py-js",
      code: "import js, random\nstamp = js.Date.new(0)\nr = random.random()",
    });
    const info = await a.snapshotSession("py-js");
    expect(info.kinds).toEqual(["journal"]);
    const r = (await a.run({ session_id: "py-js", code: "r" })).result;
    const restored = await a.restoreSession({
      snapshot_id: info.snapshot_id,
      session_id: "py-js-copy",
    });
    expect(restored).toMatchObject({ restored_from: "journal", replayed_runs: 1 });
    expect(
      (await a.run({ session_id: "py-js-copy", code: "[r, stamp.getTime()]" })).result,
    ).toEqual([r, 0]);
  });

  it("an image-only snapshot restores on its build and is refused on another", async () => {
    const a = manager(here, { maxJournalBytes: 300 });
    await a.run({ session_id: "py-only", code: `big = '${"x".repeat(400)}'\nn = 7` });
    const info = await a.snapshotSession("py-only");
    expect(info.kinds).toEqual(["image"]);
    const bytes = await a.getSnapshot(info.snapshot_id);
    const b = manager(elsewhere);
    await expect(b.restoreSession({ snapshot: bytes })).rejects.toMatchObject({
      code: "SNAPSHOT_BUILD_MISMATCH",
    });
    expect(b.listSessions()).toEqual([]);
    const restored = await manager(here).restoreSession({
      snapshot: bytes,
      session_id: "py-only-copy",
    });
    expect(restored.restored_from).toBe("image");
  });

  it("leave out an image past maxSnapshotBytes when the journal alone restores the session", async () => {
    const a = manager(here, { bounds: { maxSnapshotBytes: 1_048_576 } });
    // Two incompressible megabytes in memory: the image cannot be under 1 MiB, the journal is.
    await a.run({
      session_id: "py-big",
      code: "import os\nnoise = os.urandom(2_000_000)\nlen(noise)",
    });
    const info = await a.snapshotSession("py-big");
    expect(info.kinds).toEqual(["journal"]);
    const digest = "import hashlib\nhashlib.sha256(noise).hexdigest()";
    const original = (await a.run({ session_id: "py-big", code: digest })).result;
    await a.restoreSession({ snapshot_id: info.snapshot_id, session_id: "py-big-copy" });
    // The pinned entropy stream gives the replay the very same bytes.
    expect((await a.run({ session_id: "py-big-copy", code: digest })).result).toBe(original);
  });

  it("rebuild a session whose process died between runs from its journal, calling no tool", async () => {
    const m = manager(here);
    const before = await built(m, "py-lost");
    const calls = tickets;
    expect(herePyodide.killProcessOf("py-lost")).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const after = await m.run({ session_id: "py-lost", code: PROBE });
    expect(after.result).toEqual(before);
    expect(after.diagnostics.map((d) => d.code)).toContain("SESSION_RESTORED");
    expect(tickets).toBe(calls);
  });

  it("hibernate idle Python sessions through the image and wake them on their next run", async () => {
    const m = manager(here, { hibernateAfterMs: 1_000 });
    await m.run({
      session_id: "py-sleeper",
      code: "import random\nticket = next_ticket()\nluck = random.random()",
    });
    const kept = (await m.run({ session_id: "py-sleeper", code: "[ticket, luck]" })).result;
    const calls = tickets;
    await m.sweep(Date.now() + 1_500);
    expect(m.getSession("py-sleeper").state).toBe("hibernated");
    expect(await herePyodide.listSessions()).not.toContain("py-sleeper");
    const woken = await m.run({ session_id: "py-sleeper", code: "[ticket, luck]" });
    expect(woken.result).toEqual(kept);
    expect(tickets).toBe(calls);
    expect(m.getSession("py-sleeper").state).toBe("idle");
  });
});
