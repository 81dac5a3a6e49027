/**
 * Benchmark of the isolated-vm backend: session create and warm runs through every layer
 * (child process, IPC, cell compiler, prelude, limits), the same operations on raw
 * isolated-vm with none of them, and the QuickJS backend side by side. Prints figures; never
 * fails on time.
 *
 * Run: `node bench/isolated-vm.ts` (Node 24, after `npm install`). Raw isolated-vm needs
 * `--no-node-snapshot`, so its figures (and memory per session, which wants `--expose-gc`)
 * come from a child Node started with both: the isolates live in that process and no IPC is
 * in what is timed.
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createIsolatedVmRuntime } from "../runtimes/isolated-vm/index.ts";
import { createQuickJsRuntime } from "../runtimes/quickjs/index.ts";
import {
  DEFAULT_SESSION_LIMITS,
  type LanguageRuntime,
  ToolGateway,
  ToolRegistry,
} from "../src/index.ts";

/** The snippets every column runs. */
const SNIPPETS = {
  trivial: "1 + 1",
  /** What an agent's cell often is: build a little data, filter, reduce. */
  typical:
    "const rows = Array.from({ length: 1000 }, (_, i) => ({ id: i, v: i % 7 }));\nrows.filter((r) => r.v === 3).reduce((sum, r) => sum + r.id, 0)",
  /**
   * 10^7 loop iterations at the top level of a cell, whose `let` becomes a global of the
   * session (the REPL semantics every JavaScript backend shares).
   */
  cpu: "let total = 0;\nfor (let i = 0; i < 1e7; i++) total += i % 3;\ntotal",
  /** The same loop inside a function, on its own locals. */
  cpuInFunction:
    "function spin(n) {\n  let total = 0;\n  for (let i = 0; i < n; i++) total += i % 3;\n  return total;\n}\nspin(1e7)",
} as const;

const CREATE_SAMPLES = 30;
const WARM_SAMPLES = 300;
const CPU_SAMPLES = 7;

/** Milliseconds per operation (p50), as measured. */
interface Figures {
  createMs: number;
  trivialMs: number;
  typicalMs: number;
  cpuMs: number;
  cpuInFunctionMs: number;
}

/** What the child Node started with `--no-node-snapshot --expose-gc` reports. */
interface RawReport {
  /** Raw isolated-vm, the snippets' text as given (V8 reuses its compilation cache). */
  raw: Figures;
  /** Raw isolated-vm, each run's text new to V8 (as every cell of ours is). */
  rawNewScript: Figures;
  /** Resident memory one more session costs, in bytes. */
  ivmSessionBytes: number;
  rawSessionBytes: number;
  quickJsSessionBytes: number;
}

function p50(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function timed(samples: number, body: () => Promise<unknown>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < samples; i++) {
    const started = performance.now();
    await body();
    times.push(performance.now() - started);
  }
  return p50(times);
}

/** Runs `code` in a session of a backend, as the session manager would; checks it succeeded. */
async function runIn(runtime: LanguageRuntime, sessionId: string, code: string): Promise<void> {
  const limits = { ...DEFAULT_SESSION_LIMITS, cpu_ms: 60_000, wall_ms: 60_000 };
  const controller = new AbortController();
  const outcome = await runtime.run({
    runId: `bench-${Math.random().toString(36).slice(2)}`,
    sessionId,
    language: "javascript",
    code,
    inputs: {},
    limits,
    validateOnly: false,
    tools: new ToolGateway({
      registry: new ToolRegistry(),
      sessionId,
      runId: "bench",
      maxExternalCalls: 0,
      deadline: performance.now() + limits.wall_ms,
      signal: controller.signal,
    }),
    signal: controller.signal,
  });
  if (outcome.status !== "ok") throw new Error(`bench run failed: ${outcome.error?.message}`);
}

/** A backend through all of our layers. */
async function measureBackend(runtime: LanguageRuntime, name: string): Promise<Figures> {
  let counter = 0;
  const create = async () => {
    const id = `${name}-${++counter}`;
    await runtime.createSession(id, { ...DEFAULT_SESSION_LIMITS }, "javascript");
    return id;
  };
  // The first session starts the pool's worker; it is not part of the figures.
  const warm = await create();
  await runIn(runtime, warm, SNIPPETS.trivial);
  const created: string[] = [];
  const createMs = await timed(CREATE_SAMPLES, async () => created.push(await create()));
  for (const id of created) await runtime.destroySession(id);
  const trivialMs = await timed(WARM_SAMPLES, () => runIn(runtime, warm, SNIPPETS.trivial));
  const typicalMs = await timed(WARM_SAMPLES, () => runIn(runtime, warm, SNIPPETS.typical));
  const cpuMs = await timed(CPU_SAMPLES, () => runIn(runtime, warm, SNIPPETS.cpu));
  const cpuInFunctionMs = await timed(CPU_SAMPLES, () =>
    runIn(runtime, warm, SNIPPETS.cpuInFunction),
  );
  await runtime.close();
  return { createMs, trivialMs, typicalMs, cpuMs, cpuInFunctionMs };
}

/**
 * Raw isolated-vm in this process: a new isolate and context; `context.eval` of the same
 * snippets (their results are numbers, copied back). With `newScript`, each run's text gets a
 * unique trailing comment, so V8 compiles it afresh, as it does every cell of ours (each has
 * its own file name). Needs `--no-node-snapshot`.
 */
async function measureRaw(newScript: boolean): Promise<Figures> {
  const ivm = (await import("isolated-vm")).default;
  const isolates: InstanceType<typeof ivm.Isolate>[] = [];
  const createMs = await timed(CREATE_SAMPLES, async () => {
    const isolate = new ivm.Isolate({ memoryLimit: DEFAULT_SESSION_LIMITS.memory_mb });
    await isolate.createContext();
    isolates.push(isolate);
  });
  for (const isolate of isolates.splice(0)) isolate.dispose();
  const isolate = new ivm.Isolate({ memoryLimit: DEFAULT_SESSION_LIMITS.memory_mb });
  const context = await isolate.createContext();
  let counter = 0;
  // `const` at the top of a script cannot run twice in one context: each runs as a block.
  const evaluate = (code: string) =>
    context.eval(newScript ? `{${code}}\n// ${++counter}` : `{${code}}`, { timeout: 60_000 });
  await evaluate(SNIPPETS.trivial);
  const trivialMs = await timed(WARM_SAMPLES, () => evaluate(SNIPPETS.trivial));
  const typicalMs = await timed(WARM_SAMPLES, () => evaluate(SNIPPETS.typical));
  const cpuMs = await timed(CPU_SAMPLES, () => evaluate(SNIPPETS.cpu));
  const cpuInFunctionMs = await timed(CPU_SAMPLES, () => evaluate(SNIPPETS.cpuInFunction));
  isolate.dispose();
  return { createMs, trivialMs, typicalMs, cpuMs, cpuInFunctionMs };
}

/** Resident memory `create` adds per call, over `count` calls, garbage collected around. */
async function residentBytesPer(count: number, create: () => Promise<unknown>): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 5; i++) await create();
  gc?.();
  const before = process.memoryUsage().rss;
  for (let i = 0; i < count; i++) await create();
  gc?.();
  return (process.memoryUsage().rss - before) / count;
}

/**
 * Resident memory of one more session: one of ours (an isolate with its context, bootstrap and
 * prelude, made by the engine each child process runs), a bare isolate with a context, and a
 * QuickJS session (in this thread).
 */
async function measureSessionMemory(): Promise<
  Pick<RawReport, "ivmSessionBytes" | "rawSessionBytes" | "quickJsSessionBytes">
> {
  const ivm = (await import("isolated-vm")).default;
  const { IsolatedVmEngine } = await import("../runtimes/isolated-vm/engine.ts");
  const { isolatedVmInfo } = await import("../runtimes/isolated-vm/index.ts");
  const ours = new IsolatedVmEngine({ info: isolatedVmInfo() });
  let counter = 0;
  const ivmSessionBytes = await residentBytesPer(50, () =>
    ours.createSession(`mem-${++counter}`, { ...DEFAULT_SESSION_LIMITS }, "javascript"),
  );
  await ours.close();
  const held: unknown[] = [];
  const rawSessionBytes = await residentBytesPer(50, async () => {
    const isolate = new ivm.Isolate({ memoryLimit: DEFAULT_SESSION_LIMITS.memory_mb });
    held.push(isolate, await isolate.createContext());
  });
  const { createQuickJsEngine } = await import("../runtimes/quickjs/index.ts");
  const engine = await createQuickJsEngine();
  const quickJsSessionBytes = await residentBytesPer(50, async () => {
    const id = `mem-${++counter}`;
    await engine.createSession(id, { ...DEFAULT_SESSION_LIMITS }, "javascript");
    await runIn(engine, id, "1");
  });
  await engine.close();
  return { ivmSessionBytes, rawSessionBytes, quickJsSessionBytes };
}

/** Resident memory of an isolated-vm child process before its first session, in bytes. */
function childBaselineBytes(): number {
  const engine = fileURLToPath(new URL("../runtimes/isolated-vm/engine.ts", import.meta.url));
  const child = spawnSync(
    process.execPath,
    [
      "--no-node-snapshot",
      "--input-type=module",
      "-e",
      `await import(${JSON.stringify(engine)}); console.log(process.memoryUsage().rss)`,
    ],
    { encoding: "utf8" },
  );
  return Number(child.stdout.trim());
}

/** The figures that need raw isolated-vm in-process, from a child Node that can load it. */
function rawReport(): RawReport {
  const child = spawnSync(
    process.execPath,
    ["--no-node-snapshot", "--expose-gc", fileURLToPath(import.meta.url), "--raw-json"],
    { encoding: "utf8", maxBuffer: 1_048_576 },
  );
  if (child.status !== 0) throw new Error(`raw isolated-vm bench failed: ${child.stderr}`);
  return JSON.parse(child.stdout.trim().split("\n").at(-1) ?? "{}") as RawReport;
}

const ms = (value: number) =>
  value >= 100 ? value.toFixed(0) : value >= 1 ? value.toFixed(2) : value.toFixed(3);
const mib = (bytes: number) => (bytes / 1_048_576).toFixed(2);

/** Measures and prints the table (see the module comment). */
export async function benchIsolatedVm(): Promise<void> {
  const ours = await measureBackend(createIsolatedVmRuntime({ processes: 1 }), "ivm");
  const report = rawReport();
  const quickjs = await measureBackend(createQuickJsRuntime({ threads: 1 }), "quickjs");
  const { raw, rawNewScript } = report;

  const row = (label: string, pick: (figures: Figures) => number): string[] => [
    label,
    ms(pick(ours)),
    ms(pick(raw)),
    ratio(pick(ours), pick(raw)),
    ms(pick(rawNewScript)),
    ratio(pick(ours), pick(rawNewScript)),
    ms(pick(quickjs)),
  ];
  const rows: string[][] = [
    [
      "p50, ms",
      "isolated-vm (ours)",
      "raw",
      "ours/raw",
      "raw, new script",
      "ours/raw new",
      "QuickJS (ours)",
    ],
    row("session create", (f) => f.createMs),
    row("warm run: 1 + 1", (f) => f.trivialMs),
    row("warm run: typical cell", (f) => f.typicalMs),
    row("10^7 loop, top-level let", (f) => f.cpuMs),
    row("10^7 loop in a function", (f) => f.cpuInFunctionMs),
    [
      "memory per session, MiB",
      mib(report.ivmSessionBytes),
      mib(report.rawSessionBytes),
      ratio(report.ivmSessionBytes, report.rawSessionBytes),
      "",
      "",
      mib(report.quickJsSessionBytes),
    ],
  ];
  const baseline = childBaselineBytes();
  const widths = rows[0]!.map((_, column) =>
    Math.max(...rows.map((cells) => cells[column]!.length)),
  );
  const line = (cells: string[]) =>
    `| ${cells.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join(" | ")} |`;
  console.log(`isolated-vm benchmark (Node ${process.version}, V8 ${process.versions.v8})`);
  console.log(line(rows[0]!));
  console.log(
    `|${widths.map((width, column) => (column === 0 ? "-".repeat(width + 2) : `${"-".repeat(width + 1)}:`)).join("|")}|`,
  );
  for (const cells of rows.slice(1)) console.log(line(cells));
  console.log(
    [
      "",
      "ours: a session in a child process; each run crosses IPC both ways and goes through the cell",
      "compiler, the guest prelude and the limit slices. raw: isolated-vm's context.eval in one process",
      "(a child Node started with --no-node-snapshot), no IPC, no compiler, no limits; 'new script'",
      "makes each run's text new to V8, as every cell of ours is. Target for warm runs: ours/raw <= 1.5.",
      "A top-level let is a global of the session in ours (REPL semantics) and a block local in raw.",
      "Memory per session: resident bytes per extra session (ours: made by the engine a child runs;",
      "raw: an isolate and a context; QuickJS: in this thread), garbage collected around. Each",
      `isolated-vm child process holds ${mib(baseline)} MiB before its first session.`,
    ].join("\n"),
  );
}

function ratio(ours: number, raw: number): string {
  return `${(ours / raw).toFixed(2)}x`;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv.includes("--raw-json")) {
    const report: RawReport = {
      raw: await measureRaw(false),
      rawNewScript: await measureRaw(true),
      ...(await measureSessionMemory()),
    };
    console.log(JSON.stringify(report));
  } else {
    await benchIsolatedVm();
  }
}
