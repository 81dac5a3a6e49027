/**
 * Python session figures: the Pyodide backend against a raw `loadPyodide` and against
 * `@pydantic/monty` (a Python-subset interpreter in Rust), on the same snippets, in one run.
 * Prints figures and ratios only; nothing here passes or fails.
 *
 *   npm exec -- node bench/pyodide.ts     (Node 24 from the project; or call benchPyodide())
 *
 * Figures:
 * - session create + `1 + 1` with a warm pool (the issue's ≤ 20 ms p50 target), and cold
 *   (no ready interpreter: a contained process starts and restores the base image);
 * - a warm run in an existing session, per snippet, next to Monty's REPL on the same snippet;
 * - memory of one idle interpreter (its process's RSS and PSS, and its WebAssembly memory);
 * - a raw `loadPyodide()` cold start in this process, and a raw restore from the base image.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Monty, MontyRepl } from "@pydantic/monty";
import { createPyodideRuntime, type PyodideRuntime } from "../runtimes/pyodide/index.ts";
import { createSyncTool, DEFAULT_SESSION_LIMITS, ToolGateway, ToolRegistry } from "../src/index.ts";

/** Snippets run by both interpreters (the subset Monty runs). */
const SNIPPETS: readonly { name: string; code: string }[] = [
  { name: "1 + 1", code: "1 + 1" },
  { name: "loop 10k", code: "total = 0\nfor i in range(10000):\n    total += i * i\ntotal" },
  {
    name: "fib(20)",
    code: "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\nfib(20)",
  },
  {
    name: "strings",
    code: "words = ['alpha', 'beta', 'gamma'] * 100\n','.join([w.upper() for w in words])[:20]",
  },
  { name: "tool call", code: "get_value(3) * 2" },
];

const registry = new ToolRegistry();
registry.register(
  createSyncTool({ name: "get_value", description: "Answers its argument plus one." }, (c) => {
    return (c.args[0] as number) + 1;
  }),
);

function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? Number.NaN;
}

const ms = (value: number) =>
  value < 0.1 ? `${(value * 1_000).toFixed(1)} µs` : `${value.toFixed(value < 10 ? 2 : 1)} ms`;
const mib = (bytes: number | null) =>
  bytes === null ? "n/a" : `${(bytes / 1_048_576).toFixed(1)} MiB`;
const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(1)}×` : "n/a");

async function run(runtime: PyodideRuntime, sessionId: string, code: string) {
  const controller = new AbortController();
  const limits = { ...DEFAULT_SESSION_LIMITS };
  const tools = new ToolGateway({
    registry,
    sessionId,
    runId: "bench",
    maxExternalCalls: limits.max_external_calls,
    deadline: performance.now() + limits.wall_ms,
    signal: controller.signal,
  });
  const outcome = await runtime.run({
    runId: `bench-${Math.random().toString(36).slice(2)}`,
    sessionId,
    language: "python",
    code,
    inputs: {},
    limits,
    validateOnly: false,
    tools,
    signal: controller.signal,
  });
  tools.settle();
  if (outcome.status !== "ok")
    throw new Error(`${code}: ${outcome.status} ${outcome.error?.message}`);
  return outcome;
}

async function time<T>(body: () => Promise<T> | T): Promise<[number, T]> {
  const started = performance.now();
  const value = await body();
  return [performance.now() - started, value];
}

/** Runs the benchmark and prints its figures. */
export async function benchPyodide(): Promise<void> {
  const out = (line = "") => process.stdout.write(`${line}\n`);
  out("Python sessions: Pyodide backend vs raw loadPyodide vs @pydantic/monty");
  out(`node ${process.version}, ${process.platform}/${process.arch}`);

  // ---- Warm pool -------------------------------------------------------------------------
  const warm = createPyodideRuntime({ poolSize: 4, refillConcurrency: 2 });
  const [prepareMs] = await time(() => warm.warmUp(4));
  const stats = warm.stats();
  const idle = stats.idleInterpreter;
  out();
  out(
    `base image: ${stats.image?.built ? `built in ${ms(stats.image.buildMs)}` : "from cache"}; pool of 4 ready in ${ms(prepareMs)}`,
  );
  out(`containment: ${stats.containment}`);

  const createSamples: number[] = [];
  const createRunSamples: number[] = [];
  for (let i = 0; i < 40; i++) {
    await warm.warmUp(1);
    const id = `warm-${i}`;
    const [createMs] = await time(() =>
      warm.createSession(id, { ...DEFAULT_SESSION_LIMITS }, "python"),
    );
    const [runMs] = await time(() => run(warm, id, "1 + 1"));
    createSamples.push(createMs);
    createRunSamples.push(createMs + runMs);
    await warm.destroySession(id);
  }

  // ---- Warm runs, per snippet -----------------------------------------------------------
  await warm.warmUp(1);
  await warm.createSession("runs", { ...DEFAULT_SESSION_LIMITS }, "python");
  // Let the pool refill first: its starts would compete for CPU with the runs measured.
  await warm.warmUp(4);
  const pyodideRun = new Map<string, number>();
  for (const snippet of SNIPPETS) {
    const samples: number[] = [];
    for (let i = 0; i < 30; i++)
      samples.push((await time(() => run(warm, "runs", snippet.code)))[0]);
    pyodideRun.set(snippet.name, percentile(samples, 50));
  }
  await warm.close();

  // ---- Cold ------------------------------------------------------------------------------
  const cold = createPyodideRuntime({ poolSize: 0 });
  const coldSamples: number[] = [];
  for (let i = 0; i < 5; i++) {
    const id = `cold-${i}`;
    const [createMs] = await time(() =>
      cold.createSession(id, { ...DEFAULT_SESSION_LIMITS }, "python"),
    );
    const [runMs] = await time(() => run(cold, id, "1 + 1"));
    coldSamples.push(createMs + runMs);
    await cold.destroySession(id);
  }
  const imagePath = cold.stats().image?.path ?? null;
  await cold.close();

  // ---- Raw Pyodide in this process -------------------------------------------------------
  const { loadPyodide } = (await import("pyodide")) as unknown as {
    loadPyodide(options?: Record<string, unknown>): Promise<{ runPython(code: string): unknown }>;
  };
  const quiet = { stdout: () => {}, stderr: () => {} };
  const rawCold: number[] = [];
  for (let i = 0; i < 3; i++) {
    const [loadMs, pyodide] = await time(() => loadPyodide(quiet));
    pyodide.runPython("1 + 1");
    rawCold.push(loadMs);
  }
  const rawRestore: number[] = [];
  if (imagePath) {
    for (let i = 0; i < 3; i++) {
      const image = readFileSync(imagePath);
      rawRestore.push((await time(() => loadPyodide({ ...quiet, _loadSnapshot: image })))[0]);
    }
  }

  // ---- Monty ------------------------------------------------------------------------------
  const montyCreateRun: number[] = [];
  for (let i = 0; i < 200; i++) {
    montyCreateRun.push(
      (
        await time(() => {
          const repl = new MontyRepl();
          return repl.feed("1 + 1");
        })
      )[0],
    );
  }
  const montyRun = new Map<string, number>();
  const externalFunctions = { get_value: (x: number) => x + 1 };
  for (const snippet of SNIPPETS) {
    const samples: number[] = [];
    const repl = new MontyRepl();
    for (let i = 0; i < 30; i++) {
      samples.push(
        (
          await time(() =>
            snippet.name === "tool call"
              ? new Monty(snippet.code).run({ externalFunctions })
              : repl.feed(snippet.code),
          )
        )[0],
      );
    }
    montyRun.set(snippet.name, percentile(samples, 50));
  }

  // ---- Report ------------------------------------------------------------------------------
  const p50 = (samples: number[]) => percentile(samples, 50);
  out();
  out("session create + run `1 + 1`             p50         p90");
  out(
    `  Pyodide, warm pool                 ${ms(p50(createRunSamples)).padStart(10)}  ${ms(percentile(createRunSamples, 90)).padStart(10)}   (create alone p50 ${ms(p50(createSamples))})`,
  );
  out(
    `  Pyodide, cold (no ready process)   ${ms(p50(coldSamples)).padStart(10)}  ${ms(percentile(coldSamples, 90)).padStart(10)}`,
  );
  out(`  raw loadPyodide(), cold, in-process${ms(p50(rawCold)).padStart(10)}`);
  if (rawRestore.length > 0)
    out(`  raw loadPyodide() from the image    ${ms(p50(rawRestore)).padStart(10)}`);
  out(
    `  Monty: new MontyRepl() + feed      ${ms(p50(montyCreateRun)).padStart(10)}  ${ms(percentile(montyCreateRun, 90)).padStart(10)}`,
  );
  out(
    `  ratios: warm pool vs raw cold load ${ratio(p50(rawCold), p50(createRunSamples))} faster; vs cold ${ratio(p50(coldSamples), p50(createRunSamples))} faster; Pyodide warm / Monty ${ratio(p50(createRunSamples), p50(montyCreateRun))}`,
  );
  out();
  out("warm run in an existing session, p50     Pyodide       Monty   Pyodide/Monty");
  for (const snippet of SNIPPETS) {
    const a = pyodideRun.get(snippet.name)!;
    const b = montyRun.get(snippet.name)!;
    out(
      `  ${snippet.name.padEnd(28)} ${ms(a).padStart(10)}  ${ms(b).padStart(10)}  ${ratio(a, b).padStart(10)}`,
    );
  }
  out("  (Monty's tool call: a fresh Monty(code).run with an external function; Pyodide's: a");
  out("   registered tool through the gateway, digests and records included)");
  out();
  out("idle interpreter (one ready process)");
  out(
    `  RSS ${mib(idle.rssBytes)}, PSS ${mib(idle.pssBytes)}, of which WebAssembly memory ${mib(idle.wasmBytes)}`,
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await benchPyodide();
  process.exit(0);
}
