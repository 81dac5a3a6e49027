import { afterAll, describe, expect, it } from "vitest";
import { DEFAULT_VARIANT, quickJsInfo } from "../runtimes/quickjs/index.ts";
import {
  createSyncTool,
  DEFAULT_SESSION_LIMITS,
  spawnChildProcess,
  ToolGateway,
  ToolRegistry,
  WorkerPoolRuntime,
} from "../src/index.ts";

const pools: WorkerPoolRuntime[] = [];
afterAll(async () => {
  for (const pool of pools) await pool.close();
});

const registry = new ToolRegistry();
registry.register(createSyncTool({ name: "env_probe", description: "" }, () => "host-side"));

function processPool(env?: Record<string, string>) {
  const pool = new WorkerPoolRuntime({
    info: { ...quickJsInfo(), isolation: "child_process" },
    size: 1,
    sharedMemory: false,
    spawn: () =>
      spawnChildProcess({
        module: new URL("./fixtures/quickjs-in-process.ts", import.meta.url),
        options: { variant: DEFAULT_VARIANT },
        ...(env ? { env } : {}),
      }),
  });
  pools.push(pool);
  return pool;
}

const run = (
  pool: WorkerPoolRuntime,
  sessionId: string,
  code: string,
  signal = new AbortController().signal,
) =>
  pool.run({
    runId: `r${Math.random()}`,
    sessionId,
    language: "javascript",
    code,
    inputs: {},
    limits: { ...DEFAULT_SESSION_LIMITS, wall_ms: 2_000 },
    validateOnly: false,
    tools: new ToolGateway({
      registry,
      sessionId,
      runId: "r",
      maxExternalCalls: 5,
      deadline: performance.now() + 2_000,
      signal,
    }),
    signal,
  });

describe("WorkerPoolRuntime over child processes", () => {
  it("serves sessions, tool calls and cancellation from a child process", async () => {
    const pool = processPool();
    await pool.createSession("p1", { ...DEFAULT_SESSION_LIMITS }, "javascript");
    expect(await run(pool, "p1", "let kept = await env_probe(); kept")).toMatchObject({
      status: "ok",
      result: "host-side",
    });
    expect(await run(pool, "p1", "kept + '!'")).toMatchObject({ result: "host-side!" });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    expect((await run(pool, "p1", "await new Promise(() => {})", controller.signal)).status).toBe(
      "cancelled",
    );
  });

  it("ends a run whose process dies, and brings the session back empty", async () => {
    const pool = processPool();
    await pool.createSession("p2", { ...DEFAULT_SESSION_LIMITS }, "javascript");
    await run(pool, "p2", "globalThis.before = 1");
    const pending = run(pool, "p2", "await new Promise(() => {})");
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(pool.killWorkerOf("p2")).toBe(true);
    expect(await pending).toMatchObject({
      status: "interrupted",
      error: { code: "ENGINE_CRASHED" },
    });
    const after = await run(pool, "p2", "typeof before");
    expect(after.result).toBe("undefined");
    expect(after.diagnostics.map((d) => d.code)).toContain("SESSION_RESET");
  });

  it("stops a computing run at its limits without a shared cancel flag", async () => {
    const pool = processPool();
    await pool.createSession("p3", { ...DEFAULT_SESSION_LIMITS }, "javascript");
    // Without a shared cancel flag the engine still stops itself at wall_ms through its own clock.
    const outcome = await run(pool, "p3", "while (true) {}");
    expect(outcome.status).toBe("timeout");
  });
});
