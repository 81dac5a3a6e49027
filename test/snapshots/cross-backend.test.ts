/**
 * Journals are backend-neutral: a JavaScript session snapshotted on QuickJS restores into
 * isolated-vm (V8) and back, with the same clock, randomness and tool replies, and no tool
 * is called while replaying.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createIsolatedVmRuntime } from "../../runtimes/isolated-vm/index.ts";
import { createQuickJsRuntime } from "../../runtimes/quickjs/index.ts";
import {
  createSyncTool,
  DEFAULT_SESSION_LIMITS,
  MemorySnapshotStore,
  RuntimeRegistry,
  SessionManager,
  ToolRegistry,
} from "../../src/index.ts";

let runtimes: RuntimeRegistry;
let manager: SessionManager;
let ticketCalls = 0;

beforeAll(() => {
  runtimes = new RuntimeRegistry();
  runtimes.register(createQuickJsRuntime({ threads: 1 }));
  runtimes.register(createIsolatedVmRuntime({ processes: 1 }));
  const tools = new ToolRegistry();
  tools.register(
    createSyncTool({ name: "next_ticket", description: "A new number each call." }, () => {
      ticketCalls += 1;
      return 100 + ticketCalls;
    }),
  );
  manager = new SessionManager({
    runtimes,
    tools,
    defaults: DEFAULT_SESSION_LIMITS,
    ceilings: { ...DEFAULT_SESSION_LIMITS, wall_ms: 30_000 },
    defaultLanguage: "javascript",
    snapshots: { store: new MemorySnapshotStore(), key: new Uint8Array(randomBytes(32)) },
  });
});
afterAll(async () => {
  await manager?.close();
  await runtimes?.close();
});

describe("a JavaScript journal moves between backends", () => {
  it("QuickJS → isolated-vm → QuickJS, state intact, tools not called again", async () => {
    await manager.createSession({
      session_id: "on-quickjs",
      language: "javascript",
      runtime: "quickjs",
    });
    const first = await manager.run({
      session_id: "on-quickjs",
      code: "var ticket = await next_ticket(); var born = Date.now(); var luck = [Math.random(), Math.random()]; class Counter { constructor() { this.n = 0 } bump() { return ++this.n } } var counter = new Counter(); counter.bump(); [ticket, born, luck]",
    });
    expect(first.status).toBe("ok");
    await manager.run({
      session_id: "on-quickjs",
      language: "typescript",
      code: "const doubled: number = ticket * 2;\ncounter.bump();",
    });
    const onQuickJs = await manager.snapshotSession("on-quickjs");
    const calls = ticketCalls;

    const toV8 = await manager.restoreSession({
      snapshot_id: onQuickJs.snapshot_id,
      session_id: "on-v8",
      runtime: "isolated-vm",
    });
    expect(toV8).toMatchObject({
      restored_from: "journal",
      runtime: "isolated-vm",
      replayed_runs: 2,
    });
    expect(ticketCalls).toBe(calls);
    const seen = await manager.run({
      session_id: "on-v8",
      code: "[ticket, born, luck, doubled, counter.n]",
    });
    const [ticket, born, luck] = first.result as [number, number, number[]];
    expect(seen.result).toEqual([ticket, born, luck, ticket * 2, 2]);
    await manager.run({ session_id: "on-v8", code: "counter.bump(); var fromV8 = 'v8 was here'" });

    const onV8 = await manager.snapshotSession("on-v8");
    expect(onV8).toMatchObject({ backend: "isolated-vm", journal_runs: 4 });
    const back = await manager.restoreSession({
      snapshot_id: onV8.snapshot_id,
      session_id: "back-on-quickjs",
      runtime: "quickjs",
    });
    expect(back).toMatchObject({ runtime: "quickjs", replayed_runs: 4 });
    const again = await manager.run({
      session_id: "back-on-quickjs",
      code: "[ticket, born, luck, counter.n, fromV8]",
    });
    expect(again.result).toEqual([ticket, born, luck, 3, "v8 was here"]);
    expect(ticketCalls).toBe(calls);
  });
});
