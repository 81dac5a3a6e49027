/**
 * Known memory-safety bugs of the QuickJS build in use, reached from guest code. Each case is
 * the bug's proof of concept; it must fail harmlessly inside the sandbox.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createQuickJsRuntime } from "../../runtimes/quickjs/index.ts";
import {
  DEFAULT_SESSION_LIMITS,
  type LanguageRuntime,
  ToolGateway,
  ToolRegistry,
} from "../../src/index.ts";

let runtime: LanguageRuntime;
beforeAll(async () => {
  runtime = createQuickJsRuntime({ threads: 1 });
  await runtime.createSession("bugs", { ...DEFAULT_SESSION_LIMITS }, "javascript");
});
afterAll(async () => {
  await runtime.close();
});

async function run(code: string) {
  const controller = new AbortController();
  return runtime.run({
    runId: `bug-${Math.random()}`,
    sessionId: "bugs",
    language: "javascript",
    code,
    inputs: {},
    limits: { ...DEFAULT_SESSION_LIMITS },
    validateOnly: false,
    tools: new ToolGateway({
      registry: new ToolRegistry(),
      sessionId: "bugs",
      runId: "bug",
      maxExternalCalls: 0,
      deadline: performance.now() + 5_000,
      signal: controller.signal,
    }),
    signal: controller.signal,
  });
}

describe("QuickJS 2025-09-13 bugs reachable from guest code", () => {
  it("bellard/quickjs#492: TypedArray.prototype.with cannot read past a shrunk buffer", async () => {
    const outcome = await run(`
      const ab = new ArrayBuffer(4096, { maxByteLength: 4096 });
      const ta = new Int32Array(ab);
      let result;
      try { result = ta.with(0, { valueOf() { ab.resize(16); return 7 } }) } catch (e) { result = e }
      result instanceof Error ? "threw " + result.name : "length " + result.length`);
    expect(outcome.status).toBe("ok");
    // Unpatched, this answered "length 1024" with bytes from beyond the 16-byte buffer.
    expect(outcome.result).toBe("threw TypeError");
  });

  it("bellard/quickjs#478: a typed array cannot be built over a buffer shrunk during construction", async () => {
    const outcome = await run(`
      const rab = new ArrayBuffer(10, { maxByteLength: 10 });
      const source = new Uint8Array(rab, 0);
      const Evil = new Proxy(function () {}, {
        get(target, key, receiver) {
          if (key === "prototype") { rab.resize(0); return Uint8Array.prototype }
          return Reflect.get(target, key, receiver);
        },
      });
      let out;
      try { out = "length " + Reflect.construct(Uint8Array, [source], Evil).length } catch (e) { out = "threw " + e.name }
      out`);
    // Unpatched, this built a length-10 array over a zero-length buffer.
    expect(outcome.result).toBe("threw TypeError");
  });

  it("keeps ArrayBuffer transfer, which detaches safely", async () => {
    const outcome = await run(`
      const buffer = new ArrayBuffer(8);
      const moved = buffer.transfer(4);
      [typeof ArrayBuffer.prototype.resize, buffer.byteLength, moved.byteLength]`);
    expect(outcome.result).toEqual(["undefined", 0, 4]);
  });
});
