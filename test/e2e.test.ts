import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runAgentFlow } from "../examples/agent.ts";
import { defaultConfig } from "../src/config.ts";
import { createServer, type SandboxServer } from "../src/server.ts";

let server: SandboxServer;
let baseUrl: string;

beforeAll(async () => {
  server = await createServer({
    ...defaultConfig(),
    port: 0,
    logLevel: "silent",
    token: "e2e-token",
  });
  baseUrl = await server.listen();
});
afterAll(async () => {
  await server?.close();
});

describe("examples/agent.ts against a server listening on a port", () => {
  it("runs the agent's flow end to end", async () => {
    const steps = await runAgentFlow(baseUrl, { token: "e2e-token" });
    const [transform, readBack, earlier, runaway, mistake] = steps.map((step) => step.result);

    expect(transform).toMatchObject({
      status: "ok",
      stdout: "stored 3 customers\n",
      result: {
        acme: { orders: 2, units: 195, revenue: 33.75 },
        globex: { orders: 2, units: 340, revenue: 40 },
        initech: { orders: 1, units: 10, revenue: 2.5 },
      },
    });
    expect(transform!.external_calls.map((call) => [call.name, call.status])).toEqual([
      ["kv_set", "ok"],
      ["kv_set", "ok"],
    ]);

    expect(readBack).toMatchObject({
      status: "ok",
      result: { top: "globex", total_revenue: 76.25, keys: ["summary", "top_customer"] },
    });
    expect(earlier).toMatchObject({ status: "ok", result: 3 });

    expect(runaway).toMatchObject({
      status: "timeout",
      error: { code: "CPU_TIME_LIMIT" },
      result: null,
    });

    expect(mistake).toMatchObject({
      status: "runtime_error",
      error: { code: "RUNTIME_ERROR", span: { line: 2 } },
    });
    expect(mistake!.error!.message).toContain("toUpperCase");
  });

  it("refuses a client without the token", async () => {
    const response = await fetch(new URL("/v1/sessions", baseUrl));
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({
      error: { code: "unauthorized", message: expect.any(String) },
    });
  });
});
