/**
 * The runtime contract suite: what every backend must do, run against each one
 * (test/runtimes/*.test.ts). A backend that cannot pass a case lists it in `skip` with the
 * reason, and the case is reported as skipped under that reason.
 *
 * Cases drive the backend directly through the LanguageRuntime interface with a real tool
 * registry and gateway, as the session manager does; engines are never mocked.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createAsyncTool,
  createSyncTool,
  DEFAULT_SESSION_LIMITS,
  digestJson,
  type JournalRun,
  type Language,
  type LanguageRuntime,
  ReplayBridge,
  type RunDeterminism,
  type RuntimeRunOutcome,
  type SessionLimits,
  type ToolBridge,
  ToolError,
  ToolGateway,
  ToolRegistry,
} from "../src/index.ts";

/** Source of a case in each language family. */
export interface Sources {
  js: string;
  python?: string;
}

/** A backend under test. */
export interface ContractTarget {
  name: string;
  /** The language the suite runs (one suite per language the backend runs). */
  language: Language;
  create(): Promise<LanguageRuntime>;
  /** Cases the backend cannot pass, with why. */
  skip?: { reason: string; cases: string[] }[];
  /** Kills the engine process/thread holding a session, as a crash would; absent when in-thread. */
  killEngineOf?(runtime: LanguageRuntime, sessionId: string): boolean;
}

/** Tools every case can call. */
export function contractTools(): ToolRegistry {
  const registry = new ToolRegistry();
  registry.register(
    createSyncTool(
      { name: "echo", description: "Returns its arguments.", side_effect: "none" },
      (context) => ({ args: context.args, kwargs: context.kwargs }),
    ),
  );
  registry.register(
    createSyncTool({ name: "fail", description: "Always fails.", side_effect: "none" }, () => {
      throw new ToolError("NOPE", "it failed on purpose");
    }),
  );
  registry.register(
    createAsyncTool(
      { name: "hang", description: "Never answers.", limits: { timeout_ms: 150 } },
      () => new Promise(() => {}),
    ),
  );
  registry.register(
    createSyncTool(
      {
        name: "typed",
        description: "Takes one integer.",
        input_schema: {
          type: "array",
          prefixItems: [{ type: "integer" }],
          minItems: 1,
          maxItems: 1,
        },
      },
      (context) => (context.args[0] as number) * 2,
    ),
  );
  return registry;
}

/** Runs the suite against a target. */
export function runtimeContract(target: ContractTarget): void {
  const skipped = new Map<string, string>();
  for (const group of target.skip ?? [])
    for (const name of group.cases) skipped.set(name, group.reason);
  const js = target.language !== "python";
  const pick = (sources: Sources): string => {
    const code = js ? sources.js : sources.python;
    if (code === undefined) throw new Error(`no ${target.language} source for this case`);
    return code;
  };

  describe(`runtime contract: ${target.name} (${target.language})`, () => {
    let runtime: LanguageRuntime;
    const tools = contractTools();
    let sessionCounter = 0;

    beforeAll(async () => {
      runtime = await target.create();
    });
    afterAll(async () => {
      await runtime?.close();
    });

    const newSession = async (limits: Partial<SessionLimits> = {}) => {
      const id = `contract-${++sessionCounter}`;
      await runtime.createSession(id, { ...DEFAULT_SESSION_LIMITS, ...limits }, target.language);
      return id;
    };

    interface RunOptions {
      limits?: Partial<SessionLimits>;
      inputs?: Record<string, never> | Record<string, unknown>;
      validateOnly?: boolean;
      signal?: AbortSignal;
      language?: Language;
      determinism?: RunDeterminism;
      /** Answers tool calls instead of the contract tools (a journal replay). */
      bridge?: ToolBridge;
      onOutput?: (stream: "stdout" | "stderr", text: string) => void;
    }
    const run = async (sessionId: string, sources: Sources | string, options: RunOptions = {}) => {
      const limits = { ...DEFAULT_SESSION_LIMITS, ...options.limits };
      const controller = new AbortController();
      options.signal?.addEventListener("abort", () => controller.abort());
      const gateway = new ToolGateway({
        registry: tools,
        sessionId,
        runId: `run-${Math.random().toString(36).slice(2)}`,
        maxExternalCalls: limits.max_external_calls,
        deadline: performance.now() + limits.wall_ms,
        signal: controller.signal,
      });
      const started = performance.now();
      const outcome: RuntimeRunOutcome = await runtime.run({
        runId: `run-${sessionCounter}-${Math.random().toString(36).slice(2)}`,
        sessionId,
        language: options.language ?? target.language,
        code: typeof sources === "string" ? sources : pick(sources),
        inputs: (options.inputs ?? {}) as never,
        limits,
        validateOnly: options.validateOnly ?? false,
        tools: options.bridge ?? gateway,
        signal: controller.signal,
        ...(options.determinism ? { determinism: options.determinism } : {}),
        ...(options.onOutput ? { onOutput: options.onOutput } : {}),
      });
      gateway.settle();
      return {
        ...outcome,
        journal: gateway.journal(),
        records: gateway.records,
        elapsedMs: performance.now() - started,
        fatal: gateway.fatal,
      };
    };

    const contractCase = (name: string, body: () => Promise<void>) => {
      const reason = skipped.get(name);
      if (reason) it.skip(`${name} (skipped: ${reason})`, body);
      else it(name, body);
    };

    contractCase("keeps state across runs", async () => {
      const id = await newSession();
      const first = await run(id, {
        js: "let count = 1; const items = [1, 2]; function double(x) { return 2 * x } class Box { constructor(v) { this.v = v } }",
        python: "count = 1\nitems = [1, 2]\ndef double(x):\n    return 2 * x",
      });
      expect(first.status).toBe("ok");
      const second = await run(id, {
        js: "count += 1; double(count) + items.length + new Box(1).v",
        python: "count += 1\ndouble(count) + len(items) + 1",
      });
      expect(second).toMatchObject({ status: "ok", result: 7 });
    });

    contractCase("answers the value of the last expression statement", async () => {
      const id = await newSession();
      expect((await run(id, { js: "const a = 20; a + 22", python: "a = 20\na + 22" })).result).toBe(
        42,
      );
      expect((await run(id, { js: "const b = 1", python: "b = 1" })).result).toBeNull();
      expect((await run(id, { js: "undefined", python: "None" })).result).toBeNull();
      expect(
        (
          await run(id, {
            js: "({ a: [1, 'x', null, true], b: { c: 1.5 } })",
            python: "{'a': [1, 'x', None, True], 'b': {'c': 1.5}}",
          })
        ).result,
      ).toEqual({
        a: [1, "x", null, true],
        b: { c: 1.5 },
      });
    });

    contractCase("gives what JSON cannot hold as a string, with a diagnostic", async () => {
      const id = await newSession();
      const outcome = await run(id, {
        js: "({ big: 10n, f() {} })",
        python: "{'s': {1, 2}.__class__.__name__, 'f': print}",
      });
      expect(outcome.status).toBe("ok");
      expect(outcome.diagnostics.map((d) => d.code)).toContain("RESULT_NOT_JSON");
      expect(JSON.stringify(outcome.result)).not.toContain("undefined");
    });

    contractCase("binds inputs as globals", async () => {
      const id = await newSession();
      const outcome = await run(
        id,
        {
          js: "records.filter((r) => r.ok).length + offset",
          python: "len([r for r in records if r['ok']]) + offset",
        },
        { inputs: { records: [{ ok: true }, { ok: false }, { ok: true }], offset: 10 } },
      );
      expect(outcome).toMatchObject({ status: "ok", result: 12 });
    });

    contractCase("captures stdout and stderr", async () => {
      const id = await newSession();
      const outcome = await run(id, {
        js: "console.log('out', 1); console.error('err'); 0",
        python: "import sys\nprint('out', 1)\nprint('err', file=sys.stderr)\n0",
      });
      expect(outcome.stdout).toBe("out 1\n");
      expect(outcome.stderr).toBe("err\n");
    });

    contractCase("cuts output at max_stdout_bytes on a UTF-8 boundary and goes on", async () => {
      const id = await newSession();
      const outcome = await run(
        id,
        { js: "console.log('é'.repeat(100)); 'done'", python: "print('é' * 100)\n'done'" },
        { limits: { max_stdout_bytes: 11 } },
      );
      expect(outcome.status).toBe("ok");
      expect(outcome.result).toBe("done");
      expect(outcome.stdout).toBe("ééééé");
      expect(Buffer.byteLength(outcome.stdout)).toBeLessThanOrEqual(11);
      expect(outcome.diagnostics).toContainEqual(
        expect.objectContaining({ code: "OUTPUT_TRUNCATED", severity: "warning" }),
      );
    });

    contractCase(
      "calls tools by name and through tools, recording digests in call order",
      async () => {
        const id = await newSession();
        const outcome = await run(id, {
          js: "const a = await echo('x', 1); const b = await tools.echo({ k: [true] }); [a.args, b.args]",
          python: "a = await echo('x', 1)\nb = await echo({'k': [True]})\n[a['args'], b['args']]",
        });
        expect(outcome).toMatchObject({ status: "ok", result: [["x", 1], [{ k: [true] }]] });
        expect(outcome.records).toHaveLength(2);
        expect(outcome.records[0]).toMatchObject({
          name: "echo",
          status: "ok",
          side_effect: "none",
          request_digest: digestJson({ name: "echo", args: ["x", 1], kwargs: {} }),
          response_digest: digestJson({ args: ["x", 1], kwargs: {} }),
          error: null,
        });
        expect(outcome.records[1]!.request_digest).toBe(
          digestJson({ name: "echo", args: [{ k: [true] }], kwargs: {} }),
        );
      },
    );

    contractCase("raises a tool's error in guest code with its code", async () => {
      const id = await newSession();
      const caught = await run(id, {
        js: "let seen; try { await fail() } catch (e) { seen = [e.code, e.message] } seen",
        python: "try:\n    await fail()\nexcept Exception as e:\n    seen = [e.code, str(e)]\nseen",
      });
      expect(caught).toMatchObject({ status: "ok", result: ["NOPE", "it failed on purpose"] });
      expect(caught.records[0]).toMatchObject({
        status: "error",
        error: { code: "NOPE" },
        response_digest: null,
      });
      const uncaught = await run(id, { js: "await fail()", python: "await fail()" });
      expect(uncaught.status).toBe("runtime_error");
      expect(uncaught.error?.code).toBe("NOPE");
    });

    contractCase("checks tool arguments against input_schema", async () => {
      const id = await newSession();
      const outcome = await run(id, { js: "await typed('seven')", python: "await typed('seven')" });
      expect(outcome.status).toBe("runtime_error");
      expect(outcome.records[0]).toMatchObject({
        name: "typed",
        status: "error",
        error: { code: "INVALID_ARGUMENTS" },
      });
    });

    contractCase("cuts off a tool that never answers at its timeout", async () => {
      const id = await newSession();
      const outcome = await run(id, {
        js: "let code; try { await hang() } catch (e) { code = e.code } code",
        python: "try:\n    await hang()\nexcept Exception as e:\n    code = e.code\ncode",
      });
      expect(outcome).toMatchObject({ status: "ok", result: "TOOL_TIMEOUT" });
      expect(outcome.records[0]).toMatchObject({
        status: "timeout",
        error: { code: "TOOL_TIMEOUT" },
      });
      expect(outcome.records[0]!.duration_ms).toBeGreaterThanOrEqual(140);
    });

    contractCase("denies the call past max_external_calls and ends the run", async () => {
      const id = await newSession();
      const outcome = await run(
        id,
        {
          js: "for (let i = 0; i < 5; i++) { try { await echo(i) } catch (e) {} } 'went on'",
          python:
            "for i in range(5):\n    try:\n        await echo(i)\n    except Exception:\n        pass\n'went on'",
        },
        { limits: { max_external_calls: 2 } },
      );
      expect(outcome.status).toBe("resource_exhausted");
      expect(outcome.result).toBeNull();
      expect(outcome.records.map((r) => r.status)).toEqual(["ok", "ok", "denied"]);
      expect(outcome.records[2]!.error?.code).toBe("EXTERNAL_CALL_LIMIT");
      expect(outcome.fatal?.error.code).toBe("EXTERNAL_CALL_LIMIT");
    });

    contractCase("answers a syntax error as validation_error with a span", async () => {
      const id = await newSession();
      const outcome = await run(id, {
        js: "let ok = 1;\nlet broken = ;",
        python: "ok = 1\nbroken = )",
      });
      expect(outcome.status).toBe("validation_error");
      expect(outcome.error?.code).toBe("SYNTAX_ERROR");
      expect(outcome.error?.span?.line).toBe(2);
    });

    contractCase("answers an exception as runtime_error spanning the user's line", async () => {
      const id = await newSession();
      const outcome = await run(id, {
        js: "const a = 1;\n\nfunction f() {\n  return missing + a;\n}\nf()",
        python: "a = 1\n\ndef f():\n    return missing + a\n\nf()",
      });
      expect(outcome.status).toBe("runtime_error");
      expect(outcome.error?.code).toBe("RUNTIME_ERROR");
      expect(outcome.error?.span?.line).toBe(4);
      expect(outcome.stderr).toMatch(/missing/);
    });

    contractCase("validate_only parses without running or calling tools", async () => {
      const id = await newSession();
      const valid = await run(
        id,
        { js: "await echo(1); globalThis.ran = true", python: "await echo(1)\nran = True" },
        { validateOnly: true },
      );
      expect(valid.status).toBe("ok");
      expect(valid.records).toHaveLength(0);
      const check = await run(id, { js: "typeof ran", python: "'ran' in globals()" });
      expect(check.result).toBe(js ? "undefined" : false);
      const invalid = await run(id, { js: "let = ;", python: "def (:" }, { validateOnly: true });
      expect(invalid.status).toBe("validation_error");
      expect(invalid.error?.span).not.toBeNull();
    });

    contractCase("ends a busy loop at cpu_ms as timeout", async () => {
      const id = await newSession();
      const outcome = await run(
        id,
        { js: "while (true) {}", python: "while True:\n    pass" },
        { limits: { cpu_ms: 300 } },
      );
      expect(outcome.status).toBe("timeout");
      expect(outcome.error?.code).toBe("CPU_TIME_LIMIT");
      expect(outcome.cpuMs).toBeGreaterThanOrEqual(300);
      expect(outcome.cpuMs).toBeLessThan(350);
      const after = await run(id, { js: "'usable'", python: "'usable'" });
      expect(after.result).toBe("usable");
    });

    contractCase("ends a run at wall_ms even while it waits", async () => {
      const id = await newSession();
      const outcome = await run(
        id,
        {
          js: "await new Promise(() => {})",
          python: "import asyncio\nawait asyncio.Event().wait()",
        },
        { limits: { wall_ms: 300 } },
      );
      expect(outcome.status).toBe("timeout");
      expect(outcome.error?.code).toBe("WALL_TIME_LIMIT");
      expect(outcome.elapsedMs).toBeGreaterThanOrEqual(295);
      expect(outcome.elapsedMs).toBeLessThan(300 + 200);
    });

    contractCase(
      "stops memory growth at memory_mb, even when the guest catches the error",
      async () => {
        const id = await newSession({ memory_mb: 32 });
        const outcome = await run(
          id,
          {
            // Arrays, not `'x'.repeat(n) + i`: V8 builds that string as a rope of a few nodes.
            js: "const held = []; let caught = 0; for (let i = 0; i < 200; i++) { try { held.push(new Array(1 << 17).fill(i)) } catch (e) { caught++ } } await echo('escaped'); caught",
            python:
              "held = []\ntry:\n    for i in range(200):\n        held.append(bytearray(1 << 20))\nexcept MemoryError:\n    pass\nawait echo('escaped')",
          },
          { limits: { memory_mb: 32 } },
        );
        expect(outcome.status).toBe("resource_exhausted");
        expect(outcome.error?.code).toBe("MEMORY_LIMIT");
        expect(outcome.records).toHaveLength(0);
        expect(outcome.memoryPeakBytes).toBeLessThanOrEqual(32 * 1_048_576);
        const after = await run(id, { js: "typeof held", python: "'held' in globals()" });
        expect(after.status).toBe("ok");
      },
    );

    contractCase("ends deep recursion as resource_exhausted and stays usable", async () => {
      const id = await newSession();
      const deep = await run(id, {
        js: "function down(n) { return n === 0 ? 0 : 1 + down(n - 1) } down(1e6)",
        python: "def down(n):\n    return 0 if n == 0 else 1 + down(n - 1)\ndown(10**6)",
      });
      expect(deep.status).toBe("resource_exhausted");
      expect(deep.error?.code).toBe("STACK_LIMIT");
      // Recursion inside a native function: JSON.stringify recurses in every engine (V8's
      // JSON.parse does not: it parses nesting iteratively).
      const native = await run(id, {
        js: "let nested = []; for (let i = 0; i < 1e5; i++) nested = [nested]; JSON.stringify(nested)",
        python: "import json\njson.loads('[' * 10**6)",
      });
      expect(native.status).toBe("resource_exhausted");
      const shallow = await run(id, {
        js: "function up(n) { return n === 0 ? 0 : 1 + up(n - 1) } up(100)",
        python: "def up(n):\n    return 0 if n == 0 else 1 + up(n - 1)\nup(100)",
      });
      expect(shallow).toMatchObject({ status: "ok", result: 100 });
    });

    contractCase("maps max_stack_depth to roughly that many frames", async () => {
      const id = await newSession();
      const probe = {
        js: "let depth = 0; function probe(n) { depth = n; probe(n + 1) } try { probe(1) } catch (e) {} depth",
        python:
          "import sys\ndepth = 0\ndef probe(n):\n    global depth\n    depth = n\n    probe(n + 1)\ntry:\n    probe(1)\nexcept RecursionError:\n    pass\ndepth",
      };
      const small = await run(id, probe, { limits: { max_stack_depth: 100 } });
      const large = await run(id, probe, { limits: { max_stack_depth: 1_000 } });
      expect(small.result as number).toBeGreaterThan(50);
      expect(small.result as number).toBeLessThan(200);
      expect(large.result as number).toBeGreaterThan(500);
      expect(large.result as number).toBeLessThan(2_000);
    });

    contractCase("cancels a run that waits", async () => {
      const id = await newSession();
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 100);
      const outcome = await run(
        id,
        {
          js: "await new Promise(() => {})",
          python: "import asyncio\nawait asyncio.Event().wait()",
        },
        { signal: controller.signal },
      );
      expect(outcome.status).toBe("cancelled");
      expect(outcome.error?.code).toBe("RUN_CANCELLED");
    });

    contractCase("cancels a run that computes", async () => {
      const id = await newSession();
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 150);
      const outcome = await run(
        id,
        { js: "while (true) {}", python: "while True:\n    pass" },
        { signal: controller.signal, limits: { cpu_ms: 5_000 } },
      );
      expect(outcome.status).toBe("cancelled");
      expect(outcome.elapsedMs).toBeLessThan(1_500);
      expect((await run(id, { js: "1", python: "1" })).result).toBe(1);
    });

    contractCase("runs top-level await and timers", async () => {
      const id = await newSession();
      const outcome = await run(id, {
        js: "const waited = await new Promise((resolve) => setTimeout(() => resolve('tick'), 20)); waited",
        python: "import asyncio\nawait asyncio.sleep(0.02)\n'tick'",
      });
      expect(outcome).toMatchObject({ status: "ok", result: "tick" });
    });

    contractCase("keeps sessions apart", async () => {
      const a = await newSession();
      const b = await newSession();
      await run(a, { js: "globalThis.secret = 'a-only'", python: "secret = 'a-only'" });
      const fromB = await run(b, { js: "typeof secret", python: "'secret' in globals()" });
      expect(fromB.result).toBe(js ? "undefined" : false);
    });

    contractCase("destroys sessions and lists the rest", async () => {
      const id = await newSession();
      expect(await runtime.listSessions()).toContain(id);
      expect(await runtime.destroySession(id)).toBe(true);
      expect(await runtime.listSessions()).not.toContain(id);
      expect(await runtime.destroySession(id)).toBe(false);
      await expect(run(id, "1")).rejects.toMatchObject({ code: "SESSION_NOT_FOUND" });
    });

    if (target.language === "typescript") {
      contractCase(
        "strips TypeScript types and reports TypeScript syntax errors with spans",
        async () => {
          const id = await newSession();
          const ok = await run(
            id,
            "interface P { n: number }\nenum Color { Red, Green }\nconst p: P = { n: 2 };\np.n * Color.Green",
          );
          expect(ok).toMatchObject({ status: "ok", result: 2 });
          const bad = await run(id, "const s: string = 'x';\nlet n: = 3");
          expect(bad.status).toBe("validation_error");
          expect(bad.error?.span).toMatchObject({ line: 2, column: 8 });
        },
      );
    }

    contractCase("streams output as the guest prints it, within max_stdout_bytes", async () => {
      const id = await newSession();
      const seen: { stream: string; text: string; at: number }[] = [];
      let ended = 0;
      const outcome = await run(
        id,
        {
          js: "console.log('first'); await echo(1); console.error('oops'); console.log('x'.repeat(50))",
          python:
            "import sys\nprint('first')\nawait echo(1)\nprint('oops', file=sys.stderr)\nprint('x' * 50)",
        },
        {
          limits: { max_stdout_bytes: 20 },
          onOutput: (stream, text) => seen.push({ stream, text, at: performance.now() }),
        },
      ).finally(() => {
        ended = performance.now();
      });
      expect(outcome.status).toBe("ok");
      const streamed = (stream: string) =>
        seen
          .filter((chunk) => chunk.stream === stream)
          .map((chunk) => chunk.text)
          .join("");
      expect(streamed("stdout")).toBe(outcome.stdout);
      expect(streamed("stderr")).toBe(outcome.stderr);
      expect(outcome.stdout).toBe(`first\n${"x".repeat(14)}`);
      expect(outcome.stderr).toBe("oops\n");
      expect(seen[0]).toMatchObject({ stream: "stdout", text: "first\n" });
      expect(seen.every((chunk) => chunk.at <= ended)).toBe(true);
    });

    // Journals (docs/snapshots.md): a backend that declares "journal" pins randomness to the
    // run's seed and the clock to what it is given, and reports the clock reads.
    const journaled = (name: string, body: () => Promise<void>) => {
      const reason = skipped.get(name);
      if (reason) it.skip(`${name} (skipped: ${reason})`, body);
      else
        it(name, async (context) => {
          // Decided once the backend exists: only backends declaring "journal" must pass.
          if (!runtime.info.snapshotKinds.includes("journal")) context.skip();
          await body();
        });
    };

    journaled("pins randomness to the run's seed", async () => {
      const code = {
        js: "[Math.random(), Math.random(), Math.random()]",
        python: "import random\n[random.random(), random.random(), random.random()]",
      };
      const seed: [number, number, number, number] = [1, 2, 3, 4];
      const a = await run(await newSession(), code, { determinism: { seed, clock: null } });
      const b = await run(await newSession(), code, { determinism: { seed, clock: null } });
      const c = await run(await newSession(), code, {
        determinism: { seed: [4, 3, 2, 1], clock: null },
      });
      expect(a.status).toBe("ok");
      const values = a.result as number[];
      expect(values).toHaveLength(3);
      for (const value of values) expect(value >= 0 && value < 1).toBe(true);
      expect(new Set(values).size).toBe(3);
      expect(b.result).toEqual(values);
      expect(c.result).not.toEqual(values);
    });

    journaled(
      "reads the clock through the host: recorded, or replayed from the values given",
      async () => {
        const code = {
          js: "[Date.now(), new Date().getTime(), Date.now()]",
          python:
            "import time\n[round(time.time() * 1000), round(time.time() * 1000), round(time.time() * 1000)]",
        };
        const before = Date.now();
        const live = await run(await newSession(), code, {
          determinism: { seed: [1, 1, 1, 1], clock: null },
        });
        expect(live.status).toBe("ok");
        const read = live.result as number[];
        expect(read.every((value) => value >= before && value <= Date.now())).toBe(true);
        expect(live.clock?.complete).toBe(true);
        expect(live.clock?.values.map(Math.round)).toEqual(read);

        const replayed = await run(await newSession(), code, {
          determinism: { seed: [1, 1, 1, 1], clock: [1_000, 2_000, 3_000] },
        });
        expect(replayed.result).toEqual([1_000, 2_000, 3_000]);
        expect(replayed.clock).toEqual({ values: [1_000, 2_000, 3_000], complete: true });

        const short = await run(await newSession(), code, {
          determinism: { seed: [1, 1, 1, 1], clock: [1_000] },
        });
        expect((short.result as number[])[0]).toBe(1_000);
        expect(short.clock?.complete).toBe(false);
      },
    );

    journaled(
      "replays a run from its journal: same result, tool calls answered by request digest",
      async () => {
        const code = {
          js: "const r = Math.random(); const e = await echo(1, 'two', { three: 3 }); let failed = null; try { await fail() } catch (err) { failed = err.code } ({ r, e, failed, t: Date.now() })",
          python:
            "import random, time\nr = random.random()\ne = await echo(1, 'two', {'three': 3})\nfailed = None\ntry:\n    await fail()\nexcept ToolError as err:\n    failed = err.code\n{'r': r, 'e': e, 'failed': failed, 't': round(time.time() * 1000)}",
        };
        const seed: [number, number, number, number] = [9, 8, 7, 6];
        const original = await run(await newSession(), code, {
          determinism: { seed, clock: null },
        });
        expect(original.status).toBe("ok");
        expect(original.journal.map((call) => call.name)).toEqual(["echo", "fail"]);
        const entry: JournalRun = {
          code: pick(code),
          language: target.language,
          inputs: {},
          limits: DEFAULT_SESSION_LIMITS,
          seed,
          clock: original.clock!.values,
          calls: original.journal,
          status: original.status,
          result_digest: digestJson(original.result),
        };
        const bridge = new ReplayBridge(entry, [], Number.MIN_SAFE_INTEGER);
        const replayed = await run(await newSession(), code, {
          determinism: { seed, clock: entry.clock },
          bridge,
        });
        expect(replayed.status).toBe("ok");
        expect(replayed.result).toEqual(original.result);
        expect(bridge.divergence).toBeNull();
        expect(replayed.records).toHaveLength(0);

        // Other arguments than the journal's are a divergence, answered with SNAPSHOT_DIVERGED.
        const other = new ReplayBridge(entry, [], Number.MIN_SAFE_INTEGER + 1);
        const diverging = await run(
          await newSession(),
          { js: "await echo(2)", python: "await echo(2)" },
          { determinism: { seed, clock: entry.clock }, bridge: other },
        );
        expect(diverging.status).not.toBe("ok");
        expect(other.divergence).toMatch(/not in the journal/);
      },
    );

    if (target.killEngineOf) {
      contractCase(
        "survives its engine dying mid-run: the run ends, the session comes back empty",
        async () => {
          const id = await newSession();
          await run(id, { js: "globalThis.before = 1", python: "before = 1" });
          const pending = run(id, {
            js: "await new Promise(() => {})",
            python: "import asyncio\nawait asyncio.Event().wait()",
          });
          await new Promise((resolve) => setTimeout(resolve, 100));
          expect(target.killEngineOf!(runtime, id)).toBe(true);
          const outcome = await pending;
          expect(outcome.status).toBe("interrupted");
          expect(outcome.error?.code).toBe("ENGINE_CRASHED");
          const after = await run(id, { js: "typeof before", python: "'before' in globals()" });
          expect(after.status).toBe("ok");
          expect(after.result).toBe(js ? "undefined" : false);
          expect(after.diagnostics.map((d) => d.code)).toContain("SESSION_RESET");
        },
      );
    }
  });
}
