/**
 * What Python sessions do beyond the shared contract: tools as plain functions (blocking
 * from synchronous code, awaitable from async code, keyword arguments, Python's number
 * spelling in digests), exceptions and spans, result conversion, output, and what a run
 * leaves behind. Real Pyodide, real tool registry.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPyodideRuntime, type PyodideRuntime } from "../../runtimes/pyodide/index.ts";
import {
  createAsyncTool,
  createSyncTool,
  DEFAULT_SESSION_LIMITS,
  digestJson,
  digestJsonText,
  type RunDeterminism,
  type SessionLimits,
  ToolError,
  ToolGateway,
  ToolRegistry,
} from "../../src/index.ts";

const registry = new ToolRegistry();
registry.register(
  createSyncTool(
    {
      name: "echo",
      description: "Returns its arguments.",
      kwargs_schema: { type: "object" },
    },
    (context) => ({ args: context.args, kwargs: context.kwargs }),
  ),
);
registry.register(
  createAsyncTool({ name: "slow", description: "Answers after 150 ms." }, async (context) => {
    await new Promise((resolve) => setTimeout(resolve, 150));
    return context.args[0] ?? null;
  }),
);
registry.register(
  createSyncTool({ name: "fail", description: "Always fails." }, () => {
    throw new ToolError("NOPE", "it failed on purpose");
  }),
);

let runtime: PyodideRuntime;
beforeAll(async () => {
  runtime = createPyodideRuntime({ poolSize: 2 });
  await runtime.warmUp(1);
});
afterAll(async () => {
  await runtime?.close();
});

let counter = 0;
async function session(limits: Partial<SessionLimits> = {}): Promise<string> {
  const id = `py-${++counter}`;
  await runtime.createSession(id, { ...DEFAULT_SESSION_LIMITS, ...limits }, "python");
  return id;
}

async function run(
  id: string,
  code: string,
  options: {
    limits?: Partial<SessionLimits>;
    inputs?: Record<string, unknown>;
    validateOnly?: boolean;
    determinism?: RunDeterminism;
  } = {},
) {
  const limits = { ...DEFAULT_SESSION_LIMITS, ...options.limits };
  const controller = new AbortController();
  const gateway = new ToolGateway({
    registry,
    sessionId: id,
    runId: `r${counter}`,
    maxExternalCalls: limits.max_external_calls,
    deadline: performance.now() + limits.wall_ms,
    signal: controller.signal,
  });
  const started = performance.now();
  const outcome = await runtime.run({
    runId: `run-${Math.random().toString(36).slice(2)}`,
    sessionId: id,
    language: "python",
    code,
    inputs: (options.inputs ?? {}) as never,
    limits,
    validateOnly: options.validateOnly ?? false,
    tools: gateway,
    signal: controller.signal,
    ...(options.determinism ? { determinism: options.determinism } : {}),
  });
  gateway.settle();
  return { ...outcome, records: gateway.records, elapsedMs: performance.now() - started };
}

describe("Python tools", () => {
  it("are plain functions: a synchronous call blocks and returns the value, with keyword arguments", async () => {
    const id = await session();
    const outcome = await run(id, "reply = echo('k', 3, ttl_s=60)\nreply");
    expect(outcome).toMatchObject({
      status: "ok",
      result: { args: ["k", 3], kwargs: { ttl_s: 60 } },
    });
    expect(outcome.records[0]!.request_digest).toBe(
      digestJson({ name: "echo", args: ["k", 3], kwargs: { ttl_s: 60 } }),
    );
    // From a helper called by synchronous code, and through the tools namespace.
    const helper = await run(id, "def twice(x):\n    return tools.echo(x)['args'] * 2\ntwice(1)");
    expect(helper).toMatchObject({ status: "ok", result: [1, 1] });
  });

  it("keep Python's own spelling of numbers in the request digest", async () => {
    const id = await session();
    const outcome = await run(id, "echo(1.0, 2, big=10**20)");
    expect(outcome.status).toBe("ok");
    expect(outcome.records[0]!.request_digest).toBe(
      digestJsonText('{"name":"echo","args":[1.0,2],"kwargs":{"big":100000000000000000000}}'),
    );
    expect(outcome.records[0]!.request_digest).not.toBe(
      digestJson({ name: "echo", args: [1, 2], kwargs: { big: 1e20 } }),
    );
  });

  it("are awaitable from async code, and run concurrently under asyncio.gather", async () => {
    const id = await session();
    const outcome = await run(
      id,
      "import asyncio, time\nasync def both():\n    return await asyncio.gather(slow('a'), slow('b'))\nstarted = time.monotonic()\nvalues = await both()\n[values, time.monotonic() - started < 0.28]",
    );
    expect(outcome).toMatchObject({ status: "ok", result: [["a", "b"], true] });
    expect(outcome.records.map((r) => r.status)).toEqual(["ok", "ok"]);
  });

  it("warn when a call from async code is never awaited (the call still happens)", async () => {
    const id = await session();
    const outcome = await run(
      id,
      "import asyncio\nawait asyncio.sleep(0)\necho('forgotten')\n'done'",
    );
    expect(outcome).toMatchObject({ status: "ok", result: "done" });
    expect(outcome.records).toHaveLength(1);
    expect(outcome.stderr).toMatch(/echo\(\) from async code was never awaited/);
  });

  it("raise ToolError with .code and .status; a denied call raises a PermissionError", async () => {
    const id = await session({ max_external_calls: 1 });
    const outcome = await run(
      id,
      "out = []\ntry:\n    fail()\nexcept ToolError as e:\n    out.append([type(e).__name__, e.code, e.status, e.tool, str(e)])\ntry:\n    echo(2)\nexcept PermissionError as e:\n    out.append([type(e).__name__, e.code, e.status, isinstance(e, ToolError)])\nout",
      { limits: { max_external_calls: 1 } },
    );
    // The denied call ends the run (past max_external_calls), after the guest saw the error.
    expect(outcome.status).toBe("resource_exhausted");
    expect(outcome.records.map((r) => [r.status, r.error?.code])).toEqual([
      ["error", "NOPE"],
      ["denied", "EXTERNAL_CALL_LIMIT"],
    ]);
    const caught = await run(
      id,
      "try:\n    fail()\nexcept ToolError as e:\n    seen = [type(e).__name__, e.code, e.status, e.tool, str(e)]\nseen",
    );
    expect(caught.result).toEqual(["ToolError", "NOPE", "error", "fail", "it failed on purpose"]);
  });

  it("refuse arguments JSON cannot hold before anything is called", async () => {
    const id = await session();
    const outcome = await run(id, "echo({1, 2})");
    expect(outcome.status).toBe("runtime_error");
    expect(outcome.error?.message).toMatch(/^TypeError: arguments of echo\(\) are not JSON/);
    expect(outcome.records).toHaveLength(0);
    const nan = await run(id, "echo(x=float('nan'))");
    expect(nan.error?.message).toMatch(/keyword arguments of echo\(\) are not JSON/);
  });
});

describe("Python cells", () => {
  it("hide the last value after a trailing semicolon, and give what JSON cannot hold a form of its own", async () => {
    const id = await session();
    expect((await run(id, "1 + 1;")).result).toBeNull();
    const converted = await run(
      id,
      "import dataclasses, datetime\n@dataclasses.dataclass\nclass P:\n    x: int\n    y: float\nloop = []\nloop.append(loop)\n{'tuple': (1, 2), 'big': 2**64, 'nan': float('nan'), 'set': {3, 1, 2}, 'bytes': b'ab', 'point': P(1, 2.5), 'when': datetime.date(2026, 1, 2), 'loop': loop, 1: 'int key'}",
    );
    expect(converted.status).toBe("ok");
    expect(converted.result).toEqual({
      tuple: [1, 2],
      big: "18446744073709551616",
      nan: "NaN",
      set: [1, 2, 3],
      bytes: "b'ab'",
      point: { x: 1, y: 2.5 },
      when: "datetime.date(2026, 1, 2)",
      loop: ["[Circular]"],
      "1": "int key",
    });
    const warning = converted.diagnostics.find((d) => d.code === "RESULT_NOT_JSON");
    expect(warning?.message).toMatch(/a set, as an array/);
  });

  it("point spans at the user's line and column in code points, and keep the sandbox out of tracebacks", async () => {
    const id = await session();
    const runtimeError = await run(id, "label = 'ééé'; total = label + missing_name");
    expect(runtimeError.error).toMatchObject({
      code: "RUNTIME_ERROR",
      message: "NameError: name 'missing_name' is not defined",
      span: { line: 1, column: 32 },
    });
    expect(runtimeError.stderr).toMatch(/File "<cell-1>", line 1/);
    expect(runtimeError.stderr).not.toMatch(/sandbox/);
    const syntax = await run(id, "x = 1\ny = 'é' + )");
    expect(syntax).toMatchObject({
      status: "validation_error",
      error: {
        code: "SYNTAX_ERROR",
        message: "SyntaxError: unmatched ')'",
        span: { line: 2, column: 11 },
      },
    });
    const tool = await run(id, "def go():\n    return fail()\n\ngo()");
    expect(tool.error).toMatchObject({ code: "NOPE", span: { line: 2, column: 12 } });
    expect(tool.stderr).not.toMatch(/sandbox/);
  });

  it("capture stdout written below print, and a KeyboardInterrupt the guest raises is just an error", async () => {
    const id = await session();
    const raw = await run(
      id,
      "import os, sys\nos.write(1, b'raw\\n')\nsys.stderr.write('err\\n')\n0",
    );
    expect(raw).toMatchObject({ stdout: "raw\n", stderr: "err\n", result: 0 });
    const raised = await run(id, "raise KeyboardInterrupt");
    expect(raised).toMatchObject({ status: "runtime_error", error: { code: "RUNTIME_ERROR" } });
    expect((await run(id, "'still here'")).result).toBe("still here");
  });

  it("give every session its own random state (the base image is shared)", async () => {
    const a = await run(await session(), "import random\nrandom.random()");
    const b = await run(await session(), "import random\nrandom.random()");
    expect(a.result).not.toBe(b.result);
  });

  it("cancel tasks a cell leaves pending, and run nothing between runs", async () => {
    const id = await session();
    const started = await run(
      id,
      "import asyncio\nstate = []\nasync def forever():\n    try:\n        while True:\n            state.append('tick')\n            await asyncio.sleep(0.01)\n    except asyncio.CancelledError:\n        state.append('cancelled')\n        raise\nasyncio.ensure_future(forever())\nawait asyncio.sleep(0.05)\n'started'",
    );
    expect(started.result).toBe("started");
    const before = await run(id, "len(state)");
    await new Promise((resolve) => setTimeout(resolve, 200));
    const after = await run(id, "[len(state), state[-1]]");
    expect(after.result).toEqual([before.result, "cancelled"]);
  });

  it("ends a run whose allocation passes memory_mb even when MemoryError is caught, and resets the session once", async () => {
    const id = await session({ memory_mb: 48 });
    const outcome = await run(
      id,
      "kept = 1\ntry:\n    block = bytearray(64 * 2**20)\nexcept MemoryError:\n    caught = True\n'went on'",
      { limits: { memory_mb: 48 } },
    );
    expect(outcome).toMatchObject({
      status: "resource_exhausted",
      error: { code: "MEMORY_LIMIT" },
    });
    expect(outcome.memoryPeakBytes).toBeLessThanOrEqual(48 * 1_048_576);
    expect(outcome.diagnostics.map((d) => d.code)).toContain("SESSION_RESET");
    const next = await run(id, "'kept' in globals()", { limits: { memory_mb: 48 } });
    expect(next).toMatchObject({ status: "ok", result: false });
    expect(next.diagnostics).toEqual([]);
  });

  it("refuses memory_mb below what the interpreter itself holds", async () => {
    await expect(
      runtime.createSession("too-small", { ...DEFAULT_SESSION_LIMITS, memory_mb: 16 }, "python"),
    ).rejects.toMatchObject({ code: "LIMIT_EXCEEDS_CEILING" });
    expect(await runtime.listSessions()).not.toContain("too-small");
  });

  it("validate_only binds no inputs and runs nothing", async () => {
    const id = await session();
    const checked = await run(id, "print(value)", { inputs: { value: 1 }, validateOnly: true });
    expect(checked).toMatchObject({ status: "ok", stdout: "" });
    expect((await run(id, "'value' in globals()")).result).toBe(false);
  });
});

describe("Python journals: randomness and the clock", () => {
  const sources = [
    "import datetime, os, random, secrets, time, uuid",
    "open('/tmp/stamp.txt', 'w').write('x')",
    "[str(datetime.datetime.now()), str(datetime.date.today()), time.ctime(), time.localtime().tm_yday,",
    " time.time_ns(), os.stat('/tmp/stamp.txt').st_mtime, str(uuid.uuid4()), secrets.token_hex(8),",
    " os.urandom(4).hex(), random.Random().random(), random.random(), random.SystemRandom().random()]",
  ].join("\n");

  it("pin the wall clock, uuid4, secrets, os.urandom and unseeded Random() to the run's seed and clock", async () => {
    const seed: [number, number, number, number] = [7, 7, 7, 7];
    const live = await run(await session(), sources, { determinism: { seed, clock: null } });
    expect(live.status).toBe("ok");
    expect(live.clock?.complete).toBe(true);
    const replayed = await run(await session(), sources, {
      determinism: { seed, clock: live.clock!.values },
    });
    expect(replayed.result).toEqual(live.result);
    expect(replayed.clock).toEqual(live.clock);
    const other = await run(await session(), sources, {
      determinism: { seed: [7, 7, 7, 8], clock: live.clock!.values },
    });
    const [a, b] = [live.result as unknown[], other.result as unknown[]];
    // Same clock, other seed: the times agree, every random value differs.
    expect(b.slice(0, 6)).toEqual(a.slice(0, 6));
    for (let i = 6; i < a.length; i++) expect(b[i]).not.toEqual(a[i]);
    // A clock given in the past is what the guest sees, to the millisecond.
    const past = await run(await session(), "import datetime\nstr(datetime.datetime.now())", {
      determinism: { seed, clock: [1_000_000_000_123] },
    });
    expect(past.result).toBe("2001-09-09 01:46:40.123000");
  });

  it("seed random once per session: random.seed() in one cell holds for the next", async () => {
    const id = await session();
    await run(id, "import random\nrandom.seed(42)\nfirst = random.random()");
    const next = await run(id, "[first, random.random()]");
    const expected = await run(
      await session(),
      "import random\nr = random.Random(42)\n[r.random(), r.random()]",
    );
    expect(next.result).toEqual(expected.result);
  });

  it("leave monotonic clocks real and out of the journal", async () => {
    const outcome = await run(
      await session(),
      "import time\na = time.monotonic()\ntime.sleep(0.05)\n[time.monotonic() - a >= 0.04, time.perf_counter() > 0]",
      { determinism: { seed: [1, 2, 3, 4], clock: [5_000] } },
    );
    expect(outcome.result).toEqual([true, true]);
    expect(outcome.clock).toEqual({ values: [], complete: true });
  });
});
