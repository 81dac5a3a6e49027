import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createKvTools } from "../capabilities/kv/index.ts";
import { createQuickJsRuntime } from "../runtimes/quickjs/index.ts";
import {
  createAsyncTool,
  DEFAULT_SESSION_LIMITS,
  RuntimeRegistry,
  SessionManager,
  type SessionManagerOptions,
  ToolRegistry,
} from "../src/index.ts";

let runtimes: RuntimeRegistry;
let tools: ToolRegistry;
const managers: SessionManager[] = [];

beforeAll(() => {
  runtimes = new RuntimeRegistry();
  runtimes.register(createQuickJsRuntime({ threads: 2 }));
  tools = new ToolRegistry();
  for (const tool of createKvTools()) tools.register(tool);
  tools.register(
    createAsyncTool(
      { name: "sleep", description: "Waits ms.", limits: { timeout_ms: 10_000 } },
      async ({ args }) => {
        await new Promise((resolve) => setTimeout(resolve, args[0] as number));
        return args[0] as number;
      },
    ),
  );
});
afterAll(async () => {
  for (const manager of managers) await manager.close();
  await runtimes.close();
});

const ceilings = { ...DEFAULT_SESSION_LIMITS, memory_mb: 128, wall_ms: 10_000, cpu_ms: 5_000 };
function manager(options: Partial<SessionManagerOptions> = {}) {
  const created = new SessionManager({
    runtimes,
    tools,
    defaults: DEFAULT_SESSION_LIMITS,
    ceilings,
    defaultLanguage: "javascript",
    ...options,
  });
  managers.push(created);
  return created;
}
let counter = 0;
const sid = () => `m${++counter}`;

describe("SessionManager", () => {
  it("creates a session on its first run and keeps its state", async () => {
    const m = manager();
    const id = sid();
    const first = await m.run({
      session_id: id,
      language: "javascript",
      code: "let total = 40; total",
      limits: { memory_mb: 32 },
    });
    expect(first).toMatchObject({ status: "ok", result: 40, session_id: id, snapshot_id: null });
    expect(first.run_id).toEqual(expect.any(String));
    const second = await m.run({ session_id: id, code: "total + 2" });
    expect(second.result).toBe(42);
    const info = m.getSession(id);
    expect(info).toMatchObject({
      id,
      language: "javascript",
      runtime: "quickjs",
      run_count: 2,
      state: "idle",
      snapshot_version: 1,
    });
    expect(info.limits).toEqual({ ...DEFAULT_SESSION_LIMITS, memory_mb: 32 });
  });

  it("answers request problems as validation_error RunResults", async () => {
    const m = manager();
    expect(await m.run({ session_id: "bad/slash", code: "1" })).toMatchObject({
      status: "validation_error",
      error: { code: "INVALID_SESSION_ID" },
    });
    expect(await m.run({ session_id: sid(), language: "python", code: "1" })).toMatchObject({
      status: "validation_error",
      error: { code: "UNSUPPORTED_LANGUAGE" },
    });
    expect(await m.run({ session_id: sid(), code: "1", runtime: "nope" })).toMatchObject({
      error: { code: "UNKNOWN_RUNTIME" },
    });
    expect(await m.run({ session_id: sid(), code: "1", run_id: "bad id!" })).toMatchObject({
      error: { code: "INVALID_RUN_ID" },
    });
  });

  it("refuses limits above the ceilings, naming the limit, and creates nothing", async () => {
    const m = manager();
    const id = sid();
    const result = await m.run({ session_id: id, code: "1", limits: { memory_mb: 4_096 } });
    expect(result).toMatchObject({
      status: "validation_error",
      error: { code: "LIMIT_EXCEEDS_CEILING" },
    });
    expect(result.error?.message).toContain("memory_mb");
    expect(() => m.getSession(id)).toThrow(expect.objectContaining({ code: "SESSION_NOT_FOUND" }));
    const timeout = await m.run({ session_id: id, code: "1", timeout_ms: 60_000 });
    expect(timeout.error?.message).toContain("timeout_ms");
  });

  it("applies per-run limits and timeout_ms to that run only", async () => {
    const m = manager();
    const id = sid();
    await m.createSession({ session_id: id, language: "javascript" });
    const short = await m.run({
      session_id: id,
      code: "await new Promise(() => {})",
      timeout_ms: 200,
    });
    expect(short).toMatchObject({ status: "timeout", error: { code: "WALL_TIME_LIMIT" } });
    expect(short.metrics.duration_ms).toBeLessThan(1_000);
    const quiet = await m.run({
      session_id: id,
      code: "console.log('0123456789'); 1",
      limits: { max_stdout_bytes: 4 },
    });
    expect(quiet.stdout).toBe("0123");
    expect(m.getSession(id).limits).toEqual(DEFAULT_SESSION_LIMITS);
  });

  it("refuses python code in a JavaScript session", async () => {
    const m = manager();
    const id = sid();
    await m.run({ session_id: id, language: "javascript", code: "1" });
    expect(await m.run({ session_id: id, language: "python", code: "1" })).toMatchObject({
      status: "validation_error",
      error: { code: "LANGUAGE_MISMATCH" },
    });
    expect(
      (await m.run({ session_id: id, language: "typescript", code: "const n: number = 2; n" }))
        .result,
    ).toBe(2);
  });

  it("runs one run at a time per session, in order", async () => {
    const m = manager();
    const id = sid();
    await m.run({ session_id: id, code: "globalThis.log = []" });
    const runs = [1, 2, 3].map((n) =>
      m.run({
        session_id: id,
        code: `log.push('start ${n}'); await sleep(30); log.push('end ${n}'); log.length`,
      }),
    );
    const results = await Promise.all(runs);
    expect(results.map((result) => result.result)).toEqual([2, 4, 6]);
    expect((await m.run({ session_id: id, code: "log" })).result).toEqual([
      "start 1",
      "end 1",
      "start 2",
      "end 2",
      "start 3",
      "end 3",
    ]);
    expect(results[2]!.metrics.queue_ms).toBeGreaterThanOrEqual(40);
  });

  it("answers SESSION_BUSY past the queue bound", async () => {
    const m = manager({ maxQueuedRuns: 1 });
    const id = sid();
    await m.run({ session_id: id, code: "1" });
    const running = m.run({ session_id: id, code: "await sleep(300)" });
    const queued = m.run({ session_id: id, code: "'queued ran'" });
    await new Promise((resolve) => setTimeout(resolve, 20));
    await expect(m.run({ session_id: id, code: "1" })).rejects.toMatchObject({
      code: "SESSION_BUSY",
    });
    expect((await running).status).toBe("ok");
    expect((await queued).result).toBe("queued ran");
  });

  it("caps the number of sessions", async () => {
    const m = manager({ maxSessions: 2 });
    await m.run({ session_id: sid(), code: "1" });
    await m.createSession({ language: "javascript" });
    await expect(m.run({ session_id: sid(), code: "1" })).rejects.toMatchObject({
      code: "SESSION_LIMIT_REACHED",
    });
    await expect(m.createSession({ language: "javascript" })).rejects.toMatchObject({
      code: "SESSION_LIMIT_REACHED",
    });
  });

  it("expires idle sessions, not busy ones", async () => {
    const m = manager({ sessionIdleTtlMs: 60_000 });
    const idle = sid();
    const busy = sid();
    await m.run({ session_id: idle, code: "1" });
    await m.run({ session_id: busy, code: "1" });
    const pending = m.run({ session_id: busy, code: "await sleep(200); 'finished'" });
    await new Promise((resolve) => setTimeout(resolve, 20));
    await m.sweep(Date.now() + 120_000);
    expect(() => m.getSession(idle)).toThrow(
      expect.objectContaining({ code: "SESSION_NOT_FOUND" }),
    );
    expect(m.getSession(busy).state).toBe("running");
    expect((await pending).result).toBe("finished");
  });

  it("cancels queued and running runs by id", async () => {
    const m = manager();
    const id = sid();
    await m.run({ session_id: id, code: "1" });
    const running = m.run({ session_id: id, code: "await sleep(5000)", run_id: "run-long" });
    const queued = m.run({ session_id: id, code: "globalThis.ran = true", run_id: "run-queued" });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(m.getRun("run-long").state).toBe("running");
    expect(m.cancelRun("run-queued")).toBe(true);
    expect(m.cancelRun("run-long")).toBe(true);
    expect(await running).toMatchObject({ status: "cancelled", error: { code: "RUN_CANCELLED" } });
    expect(await queued).toMatchObject({ status: "cancelled" });
    expect(m.cancelRun("run-long")).toBe(false);
    expect((await m.run({ session_id: id, code: "typeof ran" })).result).toBe("undefined");
    expect(() => m.cancelRun("never-was")).toThrow(
      expect.objectContaining({ code: "RUN_NOT_FOUND" }),
    );
    expect(await m.run({ session_id: id, code: "1", run_id: "run-long" })).toMatchObject({
      error: { code: "RUN_ID_IN_USE" },
    });
  });

  it("remembers finished runs and long-polls unfinished ones", async () => {
    const m = manager();
    const id = sid();
    const accepted = await m.submit({ session_id: id, code: "await sleep(100); 7" });
    expect(m.getRun(accepted.runId).state).not.toBe("finished");
    const info = await m.waitForRun(accepted.runId, 5_000);
    expect(info).toMatchObject({
      state: "finished",
      session_id: id,
      result: { status: "ok", result: 7 },
    });
    expect((await m.waitForRun(accepted.runId, 0)).result?.result).toBe(7);
  });

  it("forgets the oldest finished runs past maxRetainedRuns", async () => {
    const m = manager({ maxRetainedRuns: 2 });
    const id = sid();
    for (const runId of ["keep-a", "keep-b", "keep-c"])
      await m.run({ session_id: id, code: "1", run_id: runId });
    expect(() => m.getRun("keep-a")).toThrow(expect.objectContaining({ code: "RUN_NOT_FOUND" }));
    expect(m.getRun("keep-b").state).toBe("finished");
    expect(m.getRun("keep-c").result?.result).toBe(1);
    await m.sweep(Date.now() + 24 * 3_600_000);
    expect(() => m.getRun("keep-c")).toThrow(expect.objectContaining({ code: "RUN_NOT_FOUND" }));
  });

  it("destroys a session, cancelling what it runs", async () => {
    const m = manager();
    const id = sid();
    await m.run({ session_id: id, code: "1" });
    const running = m.run({ session_id: id, code: "await sleep(5000)" });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await m.destroySession(id);
    expect((await running).status).toBe("cancelled");
    await expect(m.destroySession(id)).rejects.toMatchObject({ code: "SESSION_NOT_FOUND" });
    await expect(
      m.createSession({ session_id: id, language: "javascript" }),
    ).resolves.toMatchObject({ id });
  });

  it("counts external calls in metrics and keeps kv per session", async () => {
    const m = manager();
    const a = sid();
    const b = sid();
    const wrote = await m.run({
      session_id: a,
      code: "await kv_set('k', {n: 1}); await kv_get('k')",
    });
    expect(wrote).toMatchObject({ status: "ok", result: { n: 1 } });
    expect(wrote.metrics.external_calls_count).toBe(2);
    expect(wrote.external_calls.map((call) => call.side_effect)).toEqual(["write", "read"]);
    expect((await m.run({ session_id: b, code: "await kv_get('k')" })).result).toBeNull();
  });

  it("refuses to start with defaults above the ceilings", () => {
    expect(
      () =>
        new SessionManager({
          runtimes,
          tools,
          defaults: { ...DEFAULT_SESSION_LIMITS, memory_mb: 999 },
          ceilings,
        }),
    ).toThrow(expect.objectContaining({ code: "LIMIT_EXCEEDS_CEILING" }));
  });
});
