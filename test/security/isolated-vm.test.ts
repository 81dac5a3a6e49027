/**
 * The isolated-vm backend attacked as a hostile program would: host objects, constructor
 * chains, stack-trace hooks, proxies and thenables on values the host reads, poisoned
 * intrinsics before host calls, operations V8 cannot interrupt (isolated-vm #202), memory and
 * recursion blowups, timers. Each case asserts what the user sees and that nothing but copied
 * JSON reached the host (the `echo` tool records what it received).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createIsolatedVmRuntime } from "../../runtimes/isolated-vm/index.ts";
import {
  createSyncTool,
  DEFAULT_SESSION_LIMITS,
  digestJson,
  type SessionLimits,
  ToolError,
  ToolGateway,
  ToolRegistry,
  WorkerPoolRuntime,
} from "../../src/index.ts";

/** Arguments the `echo` tool received, host side, in call order. */
const received: unknown[] = [];
const registry = new ToolRegistry();
registry.register(
  createSyncTool(
    { name: "echo", description: "Returns its arguments.", side_effect: "none" },
    (context) => {
      received.push(context.args);
      return context.args;
    },
  ),
);
registry.register(
  createSyncTool({ name: "fail", description: "Always fails.", side_effect: "none" }, () => {
    throw new ToolError("NOPE", "it failed on purpose");
  }),
);

const runtimes: WorkerPoolRuntime[] = [];
function backend(options: Parameters<typeof createIsolatedVmRuntime>[0] = {}): WorkerPoolRuntime {
  const runtime = createIsolatedVmRuntime({ processes: 1, ...options });
  if (!(runtime instanceof WorkerPoolRuntime)) throw new Error("expected a worker pool");
  runtimes.push(runtime);
  return runtime;
}
afterAll(async () => {
  for (const runtime of runtimes) await runtime.close();
});

let counter = 0;
async function newSession(
  runtime: WorkerPoolRuntime,
  limits: Partial<SessionLimits> = {},
): Promise<string> {
  const id = `sec-${++counter}`;
  await runtime.createSession(id, { ...DEFAULT_SESSION_LIMITS, ...limits }, "javascript");
  return id;
}

async function run(
  runtime: WorkerPoolRuntime,
  sessionId: string,
  code: string,
  overrides: Partial<SessionLimits> = {},
) {
  const limits = { ...DEFAULT_SESSION_LIMITS, ...overrides };
  const controller = new AbortController();
  const gateway = new ToolGateway({
    registry,
    sessionId,
    runId: `sec-run-${counter}`,
    maxExternalCalls: limits.max_external_calls,
    deadline: performance.now() + limits.wall_ms,
    signal: controller.signal,
  });
  const started = performance.now();
  const outcome = await runtime.run({
    runId: `sec-run-${++counter}`,
    sessionId,
    language: "javascript",
    code,
    inputs: {},
    limits,
    validateOnly: false,
    tools: gateway,
    signal: controller.signal,
  });
  gateway.settle();
  return { ...outcome, records: gateway.records, elapsedMs: performance.now() - started };
}

const waitFor = async (condition: () => boolean, timeoutMs = 5_000) => {
  const until = performance.now() + timeoutMs;
  while (!condition() && performance.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return condition();
};

/**
 * File names structured frames may show a guest: the prelude, the bootstrap, and none at all
 * (cells are eval'd code, named only by their sourceURL in stack text; V8 builtins).
 */
const GUEST_FILES = /^(prelude\.js|sandbox-bootstrap\.js|undefined|null)$/;

let shared: WorkerPoolRuntime;
beforeAll(() => {
  shared = backend({ stuckThreadLimitMs: 10_000 });
});

describe("isolated-vm: nothing of the host is in the isolate", () => {
  it("has no require, process, module loader, WebAssembly or FinalizationRegistry", async () => {
    const id = await newSession(shared);
    const outcome = await run(
      shared,
      id,
      `const names = ["require", "process", "module", "exports", "Buffer", "global", "ivm",
        "setImmediate", "WebAssembly", "FinalizationRegistry", "__dirname", "fetch"];
      let imported;
      try { await import("node:fs"); imported = "imported" } catch (e) { imported = e.name + ": " + e.message }
      ({ present: names.filter((name) => name in globalThis), waitAsync: typeof Atomics.waitAsync, imported })`,
    );
    expect(outcome.status).toBe("ok");
    // isolated-vm gives contexts no module loader.
    expect(outcome.result).toEqual({
      present: [],
      waitAsync: "undefined",
      imported: "Error: Not supported",
    });
  });

  it("constructor chains reach only the isolate's own Function", async () => {
    const id = await newSession(shared);
    const outcome = await run(
      shared,
      id,
      `const probe = "return [typeof process, typeof require, this === globalThis]";
      let toolError; try { await fail() } catch (e) { toolError = e }
      const reply = await echo({ a: 1 });
      const chains = {
        arrow: (() => {}).constructor(probe)(),
        consoleLog: console.log.constructor.constructor(probe)(),
        toolFunction: tools.echo.constructor(probe)(),
        toolErrorClass: ToolError.constructor(probe)(),
        toolErrorValue: toolError.constructor.constructor(probe)(),
        toolReply: reply.constructor.constructor(probe)(),
        timers: setTimeout.constructor(probe)(),
      };
      let direct; try { this.constructor.constructor("return process")(); direct = "reached" } catch (e) { direct = e.name }
      ({ chains, direct })`,
    );
    expect(outcome.status).toBe("ok");
    const result = outcome.result as { chains: Record<string, unknown>; direct: string };
    for (const [route, value] of Object.entries(result.chains)) {
      expect(value, route).toEqual(["undefined", "undefined", true]);
    }
    expect(result.direct).toBe("ReferenceError");
  });

  it("Error.prepareStackTrace and captureStackTrace see only guest frames, and no host function", async () => {
    const id = await newSession(shared);
    const outcome = await run(
      shared,
      id,
      `const seen = [];
      Error.prepareStackTrace = (error, frames) => {
        for (const frame of frames) {
          seen.push({ file: String(frame.getFileName()), fn: typeof frame.getFunction(), self: typeof frame.getThis() });
        }
        return "mapped";
      };
      console.log({ get probe() { new Error().stack; return 1 } });
      try { await fail() } catch (e) { e.stack }
      await new Promise((resolve) => setTimeout(() => { new Error().stack; resolve() }, 1));
      await echo(1).then(() => new Error().stack);
      const holder = {};
      String({ get value() { Error.captureStackTrace(holder); holder.stack; return 1 } }.value);
      seen`,
    );
    expect(outcome.status).toBe("ok");
    const seen = outcome.result as { file: string; fn: string; self: string }[];
    const files = new Set(seen.map((frame) => frame.file));
    // The hooks did run inside the prelude's and the bootstrap's frames.
    expect(files).toContain("prelude.js");
    expect(files).toContain("sandbox-bootstrap.js");
    for (const frame of seen) {
      expect(frame.file).toMatch(GUEST_FILES);
      // Strict-mode frames give neither their function nor their receiver away.
      if (frame.file === "prelude.js" || frame.file === "sandbox-bootstrap.js") {
        expect(frame).toMatchObject({ fn: "undefined", self: "undefined" });
      }
    }
  });

  it("error stacks a user sees carry no host paths", async () => {
    const id = await newSession(shared);
    const outcome = await run(
      shared,
      id,
      `let stack; try { await fail() } catch (e) { stack = e.stack }
      let timers; try { for (let i = 0; i < 1_001; i++) setTimeout(() => {}, 60_000) } catch (e) { timers = e.stack }
      [stack, timers]`,
    );
    expect(outcome.status).toBe("ok");
    const [toolStack, timerStack] = outcome.result as [string, string];
    expect(timerStack).toMatch(/^RangeError: at most 1000 timers may be pending/);
    for (const stack of [toolStack, timerStack]) {
      expect(stack).not.toMatch(/node:|node_modules|\/work\/|runtimes\//);
    }
  });
});

describe("isolated-vm: values the host reads are copies made in the guest", () => {
  it("a Proxy result is encoded inside the isolate; its traps see guest objects only", async () => {
    const id = await newSession(shared);
    const outcome = await run(
      shared,
      id,
      `const log = [];
      new Proxy({ a: 1 }, {
        get(target, key, receiver) { log.push(typeof process); return key === "toJSON" ? undefined : Reflect.get(target, key, receiver) },
        ownKeys(target) { log.push(Object.getPrototypeOf(target) === Object.prototype); return Reflect.ownKeys(target) },
      })`,
    );
    expect(outcome).toMatchObject({ status: "ok", result: { a: 1 } });
  });

  it("a Proxy passed to a tool crosses as the JSON the guest made of it", async () => {
    const id = await newSession(shared);
    received.length = 0;
    const outcome = await run(
      shared,
      id,
      `let reads = 0;
      const args = new Proxy([1, 2], { get(target, key, receiver) { reads++; return Reflect.get(target, key, receiver) } });
      const reply = await echo(args);
      [reply, reads > 0]`,
    );
    expect(outcome).toMatchObject({ status: "ok", result: [[[1, 2]], true] });
    expect(received).toEqual([[[1, 2]]]);
    expect(outcome.records[0]!.request_digest).toBe(
      digestJson({ name: "echo", args: [[1, 2]], kwargs: {} }),
    );
  });

  it("a Proxy whose traps never return ends at cpu_ms; the session keeps its state", async () => {
    const id = await newSession(shared);
    await run(shared, id, "globalThis.kept = 'still here'");
    const outcome = await run(shared, id, "new Proxy({}, { ownKeys() { for (;;) {} } })", {
      cpu_ms: 300,
    });
    expect(outcome.status).toBe("timeout");
    expect(outcome.error?.code).toBe("CPU_TIME_LIMIT");
    expect((await run(shared, id, "kept")).result).toBe("still here");
  });

  it("getters on a result run in the guest and find nothing of the host", async () => {
    const id = await newSession(shared);
    const outcome = await run(
      shared,
      id,
      "({ get secret() { return [typeof process, typeof require, typeof ivm].join() } })",
    );
    expect(outcome).toMatchObject({
      status: "ok",
      result: { secret: "undefined,undefined,undefined" },
    });
    const throwing = await run(shared, id, "({ get broken() { throw new Error('getter') } })");
    // The prelude gives up on the value inside the isolate; only its verdict crosses.
    expect(throwing).toMatchObject({ status: "ok", result: "[unconvertible]" });
    expect(throwing.diagnostics.map((d) => d.code)).toContain("RESULT_NOT_JSON");
  });

  it("thenables and species on the cell's promise stay in the isolate", async () => {
    const id = await newSession(shared);
    const thenable = await run(
      shared,
      id,
      "({ then(resolve) { resolve({ answer: 42, host: typeof process }) } })",
    );
    expect(thenable).toMatchObject({ status: "ok", result: { answer: 42, host: "undefined" } });
    const species = await run(
      shared,
      id,
      `let constructed = 0;
      class Evil extends Promise { constructor(executor) { constructed++; super(executor) } }
      Object.defineProperty(Promise, Symbol.species, { get() { return Evil } });
      Promise.prototype.constructor = Evil;
      const reply = await echo("through species");
      [reply, constructed > 0]`,
    );
    expect(species.status).toBe("ok");
    expect(species.result).toEqual([["through species"], true]);
    expect(species.records.map((r) => r.status)).toEqual(["ok"]);
  });

  it("a poisoned Promise.prototype.then changes nothing the host sees, nor other sessions", async () => {
    const id = await newSession(shared);
    // The prelude settles tool calls with intrinsics it captured before any user code, and
    // `await` of a native promise never looks up `then`: the run goes on unharmed.
    const outcome = await run(
      shared,
      id,
      `Promise.prototype.then = function () { throw new Error("poisoned then") };
      await echo(1)`,
      { wall_ms: 1_000 },
    );
    expect(outcome).toMatchObject({ status: "ok", result: [1] });
    const thenUsed = await run(shared, id, "Promise.resolve(2).then((x) => x)", { wall_ms: 1_000 });
    expect(thenUsed).toMatchObject({
      status: "runtime_error",
      error: { code: "RUNTIME_ERROR", message: "Error: poisoned then" },
    });
    const fresh = await newSession(shared);
    expect((await run(shared, fresh, "await echo('fine')")).result).toEqual(["fine"]);
  });

  it("intrinsics poisoned before host calls do not change what crosses", async () => {
    const id = await newSession(shared);
    received.length = 0;
    const outcome = await run(
      shared,
      id,
      `JSON.stringify = () => '"forged"';
      JSON.parse = () => "forged";
      Reflect.apply = () => "forged";
      Map.prototype.get = () => undefined;
      Map.prototype.set = function () { return this };
      Promise.reject = () => "forged";
      String.prototype.slice = () => "forged";
      String.prototype.charCodeAt = () => 0;
      console.log("printed", 1);
      const reply = await echo({ k: [true] });
      reply`,
    );
    expect(outcome.status).toBe("ok");
    expect(outcome.stdout).toBe("printed 1\n");
    expect(received).toEqual([[{ k: [true] }]]);
    expect(outcome.result).toBe("forged");
  });
});

describe("isolated-vm: operations V8 cannot interrupt (isolated-vm #202)", () => {
  it("Atomics.wait blocks only until the run's limits, and the session survives", async () => {
    const id = await newSession(shared);
    await run(shared, id, "globalThis.kept = 1");
    const outcome = await run(
      shared,
      id,
      "Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60_000)",
      { wall_ms: 300 },
    );
    expect(outcome.status).toBe("timeout");
    expect(outcome.elapsedMs).toBeLessThan(300 + 600);
    expect((await run(shared, id, "kept")).result).toBe(1);
  });
  // One multiplication of two 200-million-bit numbers: about 2.5 s of V8 code that never
  // checks for termination (isolated-vm's own timeout cannot stop it either).
  const squaring = "let a = (1n << 200000000n) - 1n; let b = a * a; 'finished'";

  it("a BigInt multiplication past wall_ms is answered at once, its isolate disposed", async () => {
    const runtime = backend({ stuckThreadLimitMs: 10_000 });
    const bystander = await newSession(runtime);
    await run(runtime, bystander, "globalThis.kept = 'bystander'");
    const id = await newSession(runtime, { memory_mb: 256 });
    await run(runtime, id, "globalThis.mine = 1", { memory_mb: 256 });
    const outcome = await run(runtime, id, squaring, { wall_ms: 300, memory_mb: 256 });
    expect(outcome.status).toBe("timeout");
    expect(outcome.error?.code).toBe("WALL_TIME_LIMIT");
    expect(outcome.diagnostics.map((d) => d.code)).toContain("SESSION_RESET");
    // Answered 250 ms past wall_ms, not when the multiplication ends (seconds later).
    expect(outcome.elapsedMs).toBeLessThan(300 + 1_000);
    expect((await run(runtime, id, "typeof mine", { memory_mb: 256 })).result).toBe("undefined");
    // The thread still finishing the multiplication costs the bystander nothing.
    expect((await run(runtime, bystander, "kept")).result).toBe("bystander");
    await runtime.close();
  });

  it("a thread stuck past stuckThreadLimitMs ends its process; the server keeps serving", async () => {
    const runtime = backend({ stuckThreadLimitMs: 200 });
    const bystander = await newSession(runtime);
    await run(runtime, bystander, "globalThis.kept = 'bystander'");
    const id = await newSession(runtime, { memory_mb: 256 });
    const outcome = await run(runtime, id, squaring, { wall_ms: 300, memory_mb: 256 });
    expect(outcome.status).toBe("timeout");
    expect(outcome.error?.code).toBe("WALL_TIME_LIMIT");
    expect(await waitFor(() => runtime.workerCount === 0)).toBe(true);
    const after = await run(runtime, bystander, "typeof kept");
    expect(after).toMatchObject({ status: "ok", result: "undefined" });
    expect(after.diagnostics.map((d) => d.code)).toContain("SESSION_RESET");
    const fresh = await newSession(runtime);
    expect((await run(runtime, fresh, "6 * 7")).result).toBe(42);
  });
});

describe("isolated-vm: memory", () => {
  it("heap growth past memory_mb ends the run MEMORY_LIMIT, caught or not", async () => {
    const id = await newSession(shared, { memory_mb: 16 });
    const outcome = await run(
      shared,
      id,
      "const held = []; for (;;) { try { held.push(new Array(1 << 16).fill(held.length)) } catch (e) {} }",
      { memory_mb: 16 },
    );
    expect(outcome).toMatchObject({
      status: "resource_exhausted",
      error: { code: "MEMORY_LIMIT" },
    });
    expect(outcome.memoryPeakBytes).toBe(16 * 1_048_576);
    expect((await run(shared, id, "1 + 1", { memory_mb: 16 })).result).toBe(2);
  });

  it("ArrayBuffers past memory_mb are refused with a catchable RangeError", async () => {
    const id = await newSession(shared, { memory_mb: 16 });
    const outcome = await run(
      shared,
      id,
      "const held = []; let refused = 0; for (let i = 0; i < 64; i++) { try { held.push(new ArrayBuffer(1 << 20)) } catch (e) { refused++ } } [held.length, refused]",
      { memory_mb: 16 },
    );
    expect(outcome.status).toBe("ok");
    const [kept, refused] = outcome.result as [number, number];
    // isolated-vm counts buffers against memoryLimit with a little slack (measured: 18 MiB).
    expect(kept).toBeLessThan(24);
    expect(refused).toBe(64 - kept);
  });

  it("a fatal V8 out-of-memory ends the child: MEMORY_LIMIT for the run, empty co-tenants, other children untouched", async () => {
    const runtime = backend({ processes: 2 });
    const neighbour = await newSession(runtime);
    const bystander = await newSession(runtime);
    const id = await newSession(runtime);
    await run(runtime, neighbour, "globalThis.kept = 'neighbour'");
    await run(runtime, bystander, "globalThis.kept = 'bystander'");
    // A Map's table grows in allocations V8 cannot fail softly: most of the time isolated-vm
    // reports a catastrophic out-of-memory (after which the process cannot go on), sometimes
    // its heap-limit check disposes the isolate first. Both end the run MEMORY_LIMIT; the
    // first ends the child, which is what this case is about, so it tries until it happens.
    let childEnded = false;
    for (let attempt = 0; attempt < 10 && !childEnded; attempt++) {
      const outcome = await run(
        runtime,
        id,
        "const m = new Map(); for (let i = 0; ; i++) m.set(i, i)",
      );
      expect(outcome.status).toBe("resource_exhausted");
      expect(outcome.error?.code).toBe("MEMORY_LIMIT");
      childEnded = await waitFor(() => runtime.workerCount === 1, 1_000);
    }
    expect(childEnded).toBe(true);
    // Sessions go to the child holding the fewest: `id` shares a child with `neighbour`.
    const results = await Promise.all(
      [neighbour, bystander].map((session) => run(runtime, session, "typeof kept")),
    );
    expect(results.map((r) => r.result).sort()).toEqual(["string", "undefined"]);
    const reset = results.find((r) => r.result === "undefined")!;
    expect(reset.diagnostics.map((d) => d.code)).toContain("SESSION_RESET");
    expect((await run(runtime, id, "'back'")).result).toBe("back");
  });

  it("output floods are cut at the source and counted; results too large to cross are dropped", async () => {
    const id = await newSession(shared, { memory_mb: 128 });
    const flood = await run(
      shared,
      id,
      "for (let i = 0; i < 50; i++) console.log('x'.repeat(1 << 20)); 'done'",
      { max_stdout_bytes: 1_000, memory_mb: 128 },
    );
    expect(flood).toMatchObject({ status: "ok", result: "done" });
    expect(flood.stdout).toBe("x".repeat(1_000));
    const truncated = flood.diagnostics.find((d) => d.code === "OUTPUT_TRUNCATED");
    expect(truncated?.message).toContain(`${50 * ((1 << 20) + 1) - 1_000} more bytes`);
    const big = await run(shared, id, "'y'.repeat(17 * 2 ** 20)", { memory_mb: 128 });
    expect(big).toMatchObject({ status: "ok", result: null });
    expect(big.diagnostics.map((d) => d.code)).toContain("RESULT_NOT_JSON");
    received.length = 0;
    const args = await run(
      shared,
      id,
      "let name; try { await echo('z'.repeat(17 * 2 ** 20)) } catch (e) { name = e.name } name",
      { memory_mb: 128 },
    );
    expect(args.result).toBe("RangeError");
    expect(args.records).toHaveLength(0);
    expect(received).toEqual([]);
  });
});

describe("isolated-vm: recursion and timers", () => {
  it("recursion through user code, getters, toString and proxies ends without harm", async () => {
    const id = await newSession(shared);
    const cases: [code: string, status: string, result: unknown][] = [
      ["function down() { return down() } down()", "resource_exhausted", null],
      [
        "const o = { toString() { return String(o) } }; console.log('' + o)",
        "resource_exhausted",
        null,
      ],
      [
        "new Proxy({}, { get(target, key, receiver) { return receiver[key] } })",
        "resource_exhausted",
        null,
      ],
      // Inside the result encoder the overflow is caught, and the value given up on.
      [
        "const o = {}; Object.defineProperty(o, 'x', { get() { return o.x }, enumerable: true }); o",
        "ok",
        "[unconvertible]",
      ],
    ];
    for (const [code, status, result] of cases) {
      const outcome = await run(shared, id, code);
      expect(outcome, code).toMatchObject({ status, result });
      if (status === "resource_exhausted") expect(outcome.error?.code).toBe("STACK_LIMIT");
    }
    expect((await run(shared, id, "'still serving'")).result).toBe("still serving");
  });

  it("timers end with their run: an interval left behind does not run between runs", async () => {
    const id = await newSession(shared);
    await run(
      shared,
      id,
      "globalThis.ticks = 0; setInterval(() => { ticks++ }, 5); await new Promise((r) => setTimeout(r, 40)); ticks",
    );
    const before = (await run(shared, id, "ticks")).result as number;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await run(shared, id, "ticks")).result).toBe(before);
  });
});
