/**
 * Journals protect neighbours: when an engine worker dies (a crash, the watchdog, a tenant's
 * hostile program), the sessions that shared it are rebuilt from their journals before their
 * next run — state intact, no tool called again — while the session whose run was in flight
 * starts empty, as its RunResult said.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createQuickJsRuntime } from "../../runtimes/quickjs/index.ts";
import {
  createSyncTool,
  DEFAULT_SESSION_LIMITS,
  MemorySnapshotStore,
  RuntimeRegistry,
  SessionManager,
  ToolRegistry,
  type WorkerPoolRuntime,
} from "../../src/index.ts";

let pool: WorkerPoolRuntime;
let runtimes: RuntimeRegistry;
let manager: SessionManager;
let tickets = 0;

beforeAll(() => {
  // One worker thread: every session shares it, so killing it hits them all.
  pool = createQuickJsRuntime({ threads: 1 }) as WorkerPoolRuntime;
  runtimes = new RuntimeRegistry();
  runtimes.register(pool);
  const tools = new ToolRegistry();
  tools.register(
    createSyncTool(
      { name: "next_ticket", description: "A new number each call." },
      () => ++tickets,
    ),
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

describe("sessions sharing a worker that dies", () => {
  it("rebuilds the neighbours from their journals; the culprit starts empty", async () => {
    const first = await manager.run({
      session_id: "neighbour",
      code: "var ticket = await next_ticket(); var seen = [Date.now(), Math.random()]; ticket",
    });
    expect(first.status).toBe("ok");
    await manager.run({ session_id: "neighbour", code: "var more = ticket * 10" });
    await manager.run({ session_id: "culprit", code: "var mine = 'culprit state'" });
    const calls = tickets;

    const hanging = manager.run({
      session_id: "culprit",
      code: "await new Promise(() => {})",
      timeout_ms: 20_000,
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(pool.killWorkerOf("culprit")).toBe(true);
    const crashed = await hanging;
    expect(crashed.status).toBe("interrupted");
    expect(crashed.diagnostics.map((d) => d.code)).toContain("SESSION_RESET");

    const after = await manager.run({
      session_id: "neighbour",
      code: "[ticket, more, seen.length]",
    });
    expect(after.status).toBe("ok");
    expect(after.result).toEqual([first.result, (first.result as number) * 10, 2]);
    expect(after.diagnostics).toContainEqual(
      expect.objectContaining({ severity: "info", code: "SESSION_RESTORED" }),
    );
    expect(after.diagnostics.map((d) => d.code)).not.toContain("SESSION_RESET");
    expect(tickets).toBe(calls);

    const culprit = await manager.run({ session_id: "culprit", code: "typeof mine" });
    expect(culprit.result).toBe("undefined");
    expect(culprit.diagnostics.map((d) => d.code)).not.toContain("SESSION_RESTORED");
  });
});
