import { type ChildProcess, spawn } from "node:child_process";
import { resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { defaultConfig } from "../src/config.ts";
import { createServer, type SandboxServer } from "../src/server.ts";

const servers: SandboxServer[] = [];
const children: ChildProcess[] = [];
afterAll(async () => {
  for (const server of servers) await server.close();
  for (const child of children) child.kill();
});

describe("the capability author's examples", () => {
  it("loads a user's own tool pack named in the configuration", async () => {
    const base = defaultConfig();
    const server = await createServer({
      ...base,
      logLevel: "silent",
      defaultLanguage: "javascript",
      capabilities: [
        ...base.capabilities,
        { module: resolve("examples/units-pack.ts"), options: { precision: 2 } },
      ],
    });
    servers.push(server);
    const ok = await server.manager.run({
      session_id: "units",
      code: "await convert_units(5, 'km', 'mi')",
    });
    expect(ok).toMatchObject({ status: "ok", result: 3.11 });
    const refused = await server.manager.run({
      session_id: "units",
      code: "await convert_units(1, 'kg', 'm')",
    });
    expect(refused).toMatchObject({
      status: "runtime_error",
      error: { code: "INCOMPATIBLE_UNITS" },
    });
    const stubs = await server.manager.stubs.get("typescript");
    expect(stubs).toContain(
      'declare function convert_units(value: number, from_unit: ("m" | "km" | "mi" | "ft" | "g" | "kg" | "lb")',
    );
  });

  it("registers the Python remote tool and calls it from guest code", async () => {
    const child = spawn("python3", ["examples/remote_tool.py", "0"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    children.push(child);
    const url = await new Promise<string>((resolveUrl, reject) => {
      child.stdout!.on("data", (chunk: Buffer) => {
        const match = /listening on (\S+)/.exec(chunk.toString());
        if (match) resolveUrl(match[1]!);
      });
      child.on("exit", (code) => reject(new Error(`remote_tool.py exited with ${code}`)));
    });
    const server = await createServer({
      ...defaultConfig(),
      logLevel: "silent",
      defaultLanguage: "javascript",
      adminToken: "admin",
    });
    servers.push(server);
    const registered = await server.app.inject({
      method: "POST",
      url: "/v1/capabilities",
      headers: { authorization: "Bearer admin" },
      payload: {
        name: "word_count",
        description: "Counts the words of a text.",
        input_schema: {
          type: "array",
          prefixItems: [{ title: "text", type: "string" }],
          minItems: 1,
          maxItems: 1,
        },
        output_schema: { type: "integer" },
        endpoint: { url },
      },
    });
    expect(registered.statusCode).toBe(201);
    const counted = await server.manager.run({
      session_id: "remote",
      code: "const n = await word_count('the quick brown fox'); let e; try { await word_count('  ') } catch (err) { e = err.code } [n, e]",
    });
    expect(counted).toMatchObject({ status: "ok", result: [4, "EMPTY_TEXT"] });
  });
});
