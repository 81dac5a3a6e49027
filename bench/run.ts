/**
 * The benchmark (`npm run bench`): prints figures for the QuickJS backend, with the targets
 * beside them for the reader. It never judges a number and never exits non-zero because of
 * one.
 *
 * Environment: BENCH_DURATION_S (HTTP load seconds, default 10), BENCH_CONNECTIONS (default 10),
 * BENCH_HTTP_INPROCESS=0 to skip the second HTTP run (server in this process).
 *
 * @module
 */
import { fork } from "node:child_process";
import os from "node:os";
import { getHeapStatistics, setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { Worker } from "node:worker_threads";
import variantImport from "@jitl/quickjs-wasmfile-release-sync";
import { newQuickJSWASMModuleFromVariant, type QuickJSSyncVariant } from "quickjs-emscripten-core";
import {
  createQuickJsEngine,
  createQuickJsRuntime,
  DEFAULT_VARIANT,
  quickJsInfo,
} from "../runtimes/quickjs/index.ts";
import {
  INITIAL_MEMORY_BYTES,
  instantiateEngine,
  loadEngineBuild,
} from "../runtimes/quickjs/memory.ts";
import { defaultConfig } from "../src/config.ts";
import {
  DEFAULT_SESSION_LIMITS,
  type LanguageRuntime,
  type RuntimeRunOutcome,
  ToolGateway,
  ToolRegistry,
} from "../src/index.ts";
import { createServer } from "../src/server.ts";
import { benchServerConfig, type LoadResult, runLoad } from "./http.ts";
import { benchIsolatedVm } from "./isolated-vm.ts";
import { measurePeer } from "./peer.ts";
import { benchPyodide } from "./pyodide.ts";
import { PYODIDE_TARGET, QUICKJS_TARGET, snapshotBench } from "./snapshots.ts";
import {
  bytes,
  int,
  ms,
  nowMs,
  SUMMARY_HEADER,
  sample,
  summarize,
  summaryRow,
  table,
} from "./stats.ts";

const envInt = (name: string, fallback: number): number => {
  const value = Number(process.env[name]);
  return Number.isFinite(value) && value > 0 ? value : fallback;
};

const DURATION_S = envInt("BENCH_DURATION_S", 10);
const CONNECTIONS = envInt("BENCH_CONNECTIONS", 10);
const HTTP_INPROCESS = process.env.BENCH_HTTP_INPROCESS !== "0";
const SESSION_WARMUP = 20;
const SESSION_ITERATIONS = 200;
const RUN_WARMUP = 1_000;
const RUN_ITERATIONS = 2_000;
const MEMORY_SESSIONS = 100;

const TARGET_WARM = "target <= 0.2 ms p50";
const TARGET_NEW = "target <= 3 ms p50";
const TARGET_HTTP = "target >= 3,000 runs/s";

const LIMITS = { ...DEFAULT_SESSION_LIMITS };
/** The engine build's variant (its CJS/ESM typings confuse the default import's type). */
const variant = variantImport as unknown as QuickJSSyncVariant;
const TOOLS = new ToolRegistry();
const anomalies: string[] = [];
const benchStart = nowMs();

// A GC between phases keeps one phase's garbage out of the next one's figures.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

function loadAverage(): string {
  return os
    .loadavg()
    .map((value) => value.toFixed(2))
    .join(" / ");
}

function out(text = ""): void {
  process.stdout.write(`${text}\n`);
}

function section(title: string): void {
  out();
  out(title);
  out("=".repeat(title.length));
}

/** Notes an unexpected answer (once per label); the benchmark goes on. */
function expectTwo(label: string, outcome: { status: string; result: unknown }): void {
  if (outcome.status === "ok" && outcome.result === 2) return;
  if (anomalies.some((line) => line.startsWith(label))) return;
  anomalies.push(`${label}: status ${outcome.status}, result ${JSON.stringify(outcome.result)}`);
}

let runCounter = 0;

/** One run of `code` through a LanguageRuntime, as the session manager would call it. */
function runOn(
  runtime: LanguageRuntime,
  sessionId: string,
  code = "1 + 1",
): Promise<RuntimeRunOutcome> {
  const runId = `bench-run-${++runCounter}`;
  const controller = new AbortController();
  const gateway = new ToolGateway({
    registry: TOOLS,
    sessionId,
    runId,
    maxExternalCalls: LIMITS.max_external_calls,
    deadline: performance.now() + LIMITS.wall_ms,
    signal: controller.signal,
  });
  return runtime
    .run({
      runId,
      sessionId,
      language: "javascript",
      code,
      inputs: {},
      limits: LIMITS,
      validateOnly: false,
      tools: gateway,
      signal: controller.signal,
    })
    .finally(() => gateway.settle());
}

interface LifecycleTimings {
  create: number[];
  createDestroy: number[];
  createFirstRun: number[];
  createFirstRunDestroy: number[];
  warm: number[];
}

/** Session create, new session + first run, and warm runs on one LanguageRuntime. */
async function lifecycle(runtime: LanguageRuntime, label: string): Promise<LifecycleTimings> {
  let n = 0;
  const fresh = () => `bench-${label}-${++n}`;

  gc();
  const create: number[] = [];
  const createDestroy: number[] = [];
  for (let i = 0; i < SESSION_WARMUP + SESSION_ITERATIONS; i++) {
    const id = fresh();
    const start = nowMs();
    await runtime.createSession(id, LIMITS, "javascript");
    const elapsed = nowMs() - start;
    await runtime.destroySession(id);
    if (i >= SESSION_WARMUP) {
      create.push(elapsed);
      createDestroy.push(nowMs() - start);
    }
  }

  gc();
  const createFirstRun: number[] = [];
  const createFirstRunDestroy: number[] = [];
  for (let i = 0; i < SESSION_WARMUP + SESSION_ITERATIONS; i++) {
    const id = fresh();
    const start = nowMs();
    await runtime.createSession(id, LIMITS, "javascript");
    const outcome = await runOn(runtime, id);
    const ran = nowMs();
    await runtime.destroySession(id);
    const destroyed = nowMs();
    expectTwo(`${label} first run`, outcome);
    if (i >= SESSION_WARMUP) {
      createFirstRun.push(ran - start);
      createFirstRunDestroy.push(destroyed - start);
    }
  }

  gc();
  const id = fresh();
  await runtime.createSession(id, LIMITS, "javascript");
  const warm = await sample(RUN_WARMUP, RUN_ITERATIONS, async () => {
    expectTwo(`${label} warm run`, await runOn(runtime, id));
  });
  await runtime.destroySession(id);
  return { create, createDestroy, createFirstRun, createFirstRunDestroy, warm };
}

/** RSS growth per idle session, on a fresh pool whose workers are already started. */
async function memoryPerSession(): Promise<{ idle: number; afterRun: number; workers: number }> {
  const pool = createQuickJsRuntime();
  const workers = Math.max(2, os.availableParallelism());
  // Start every worker (the pool spawns one per new session until it has its full size).
  for (let i = 0; i < workers; i++) await pool.createSession(`mem-warm-${i}`, LIMITS, "javascript");
  for (let i = 0; i < workers; i++) await runOn(pool, `mem-warm-${i}`);
  for (let i = 0; i < workers; i++) await pool.destroySession(`mem-warm-${i}`);
  const settle = async () => {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 300));
    gc();
    return process.memoryUsage.rss();
  };
  const before = await settle();
  for (let i = 0; i < MEMORY_SESSIONS; i++) {
    await pool.createSession(`mem-${i}`, LIMITS, "javascript");
  }
  const idle = await settle();
  for (let i = 0; i < MEMORY_SESSIONS; i++) await runOn(pool, `mem-${i}`);
  const afterRun = await settle();
  await pool.close();
  return {
    idle: (idle - before) / MEMORY_SESSIONS,
    afterRun: (afterRun - before) / MEMORY_SESSIONS,
    workers,
  };
}

/** Engine-only floors: what quickjs-emscripten costs with none of our code around it. */
async function floors(): Promise<{
  rawEval: number[];
  rawNewContext: number[];
  newInstance: number[];
  workerEcho: number[];
}> {
  const module = await newQuickJSWASMModuleFromVariant(variant);
  const context = module.newContext();
  const rawEval = await sample(RUN_WARMUP, RUN_ITERATIONS, () => {
    const handle = context.unwrapResult(context.evalCode("1 + 1"));
    const value = context.getNumber(handle);
    handle.dispose();
    if (value !== 2) anomalies.push(`raw eval answered ${value}`);
  });
  context.dispose();
  const rawNewContext = await sample(SESSION_WARMUP, SESSION_ITERATIONS, () => {
    const runtime = module.newRuntime();
    const ctx = runtime.newContext();
    const handle = ctx.unwrapResult(ctx.evalCode("1 + 1"));
    handle.dispose();
    ctx.dispose();
    runtime.dispose();
  });
  const build = await loadEngineBuild(DEFAULT_VARIANT);
  gc();
  const newInstance = await sample(SESSION_WARMUP, SESSION_ITERATIONS, () =>
    instantiateEngine(build, LIMITS.memory_mb * 1_048_576),
  );
  return { rawEval, rawNewContext, newInstance, workerEcho: await workerEcho() };
}

/** Round trip of a run-sized message to a worker thread that echoes it: the pool's floor. */
async function workerEcho(): Promise<number[]> {
  const worker = new Worker(
    "require('node:worker_threads').parentPort.on('message', (m) => require('node:worker_threads').parentPort.postMessage(m))",
    { eval: true },
  );
  const message = {
    kind: "run",
    requestId: 0,
    run: {
      runId: "bench-run-0",
      sessionId: "bench-session",
      language: "javascript",
      code: "1 + 1",
      inputs: {},
      limits: LIMITS,
      validateOnly: false,
      toolNames: ["kv_get", "kv_set"],
      toolsVersion: 1,
      cancelSlot: 0,
    },
  };
  const roundTrip = () =>
    new Promise<void>((resolve) => {
      worker.once("message", () => resolve());
      worker.postMessage(message);
    });
  const durations = await sample(RUN_WARMUP, RUN_ITERATIONS, roundTrip);
  await worker.terminate();
  return durations;
}

/** Forks ./http-server.ts and answers its URL and a way to query and stop it. */
async function startChildServer(): Promise<{
  url: string;
  stats(): Promise<{ cpu: NodeJS.CpuUsage; rss: number; sessions: number }>;
  close(): Promise<void>;
}> {
  const child = fork(new URL("./http-server.ts", import.meta.url), [], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const waitFor = <T>(kind: string) =>
    new Promise<T>((resolve, reject) => {
      const onMessage = (message: { kind: string }) => {
        if (message.kind !== kind) return;
        child.off("message", onMessage);
        child.off("exit", onExit);
        resolve(message as T);
      };
      const onExit = (code: number | null) => reject(new Error(`server exited (${code})`));
      child.on("message", onMessage);
      child.once("exit", onExit);
    });
  const { url } = await waitFor<{ url: string }>("listening");
  return {
    url,
    async stats() {
      const reply = waitFor<{ cpu: NodeJS.CpuUsage; rss: number; sessions: number }>("stats");
      child.send({ kind: "stats" });
      return reply;
    },
    async close() {
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.send({ kind: "close" });
      const timer = setTimeout(() => child.kill(), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** autocannon's latencies are whole milliseconds: 0 means under 1 ms. */
function wholeMs(value: number): string {
  return value < 1 ? "<1 ms" : `${Math.round(value)} ms`;
}

function httpRows(label: string, load: LoadResult): string[][] {
  const r = load.result;
  const statuses = Object.entries(r.statusCodeStats ?? {})
    .map(([code, { count }]) => `${code}: ${int(count)}`)
    .join(", ");
  return [
    [
      label,
      `${int(load.responses / r.duration)}/s`,
      wholeMs(r.latency.p50),
      wholeMs(r.latency.p99),
      int(r.non2xx),
      int(r.errors + r.timeouts),
      `${statuses || "-"}  ${TARGET_HTTP}`,
    ],
  ];
}

async function main(): Promise<void> {
  const cpus = os.cpus();
  const info = quickJsInfo();
  out(`sandbox-runner benchmark  ${new Date().toISOString()}`);
  out(
    `machine  ${cpus[0]?.model ?? "unknown CPU"}, ${cpus.length} logical cores (availableParallelism ${os.availableParallelism()}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, ${os.platform()} ${os.arch()} ${os.release()}`,
  );
  out(
    `load     ${loadAverage()} (1/5/15 min load average at start; other processes share the machine)`,
  );
  out(`node     ${process.version} (V8 ${process.versions.v8})`);
  out(`engine   ${info.engine}`);
  out(`limits   ${JSON.stringify(LIMITS)}`);
  out(
    `method   per-iteration timing with process.hrtime; warm-up ${RUN_WARMUP} runs / ${SESSION_WARMUP} sessions untimed; a session's destroy is never inside a "create" figure`,
  );

  section(`1. Memory per idle session (worker pool, RSS growth over ${MEMORY_SESSIONS} sessions)`);
  const memory = await memoryPerSession();
  out(
    table(
      ["measurement", "per session", "note"],
      [
        [
          "idle session (created, never run)",
          bytes(memory.idle),
          `pool of ${memory.workers} worker threads started beforehand`,
        ],
        [
          "after one run of `1 + 1` each",
          bytes(memory.afterRun),
          `each session reserves a ${bytes(INITIAL_MEMORY_BYTES)} WebAssembly memory (address space)`,
        ],
      ],
    ),
  );

  section("2. Sessions: create, and new session + first run of `1 + 1`");
  const cold = nowMs();
  const engine = await createQuickJsEngine();
  const engineLoadMs = nowMs() - cold;
  const inProcess = await lifecycle(engine, "engine");
  const poolStart = nowMs();
  const pool = createQuickJsRuntime();
  await pool.createSession("pool-cold", LIMITS, "javascript");
  const poolColdMs = nowMs() - poolStart;
  await pool.destroySession("pool-cold");
  const pooled = await lifecycle(pool, "pool");
  out(
    table(SUMMARY_HEADER, [
      summaryRow("session create: in-process engine", inProcess.create),
      summaryRow("session create: worker pool", pooled.create),
      summaryRow(
        "new session + first run: in-process engine",
        inProcess.createFirstRun,
        TARGET_NEW,
      ),
      summaryRow("new session + first run: worker pool", pooled.createFirstRun, TARGET_NEW),
      summaryRow("  same + destroy: in-process engine", inProcess.createFirstRunDestroy),
      summaryRow("  same + destroy: worker pool", pooled.createFirstRunDestroy),
    ]),
  );
  out(
    `cold start (once): engine build load + compile ${ms(engineLoadMs)}; pool's first session incl. worker start ${ms(poolColdMs)}`,
  );

  section("3. Warm run of `1 + 1` on an existing session");
  gc();
  const server = await createServer(benchServerConfig(defaultConfig()));
  const manager = server.manager;
  const first = await manager.run({
    session_id: "bench-manager",
    language: "javascript",
    code: "1 + 1",
  });
  expectTwo("manager first run", first);
  const managerRun = async () => {
    expectTwo(
      "manager warm run",
      await manager.run({ session_id: "bench-manager", language: "javascript", code: "1 + 1" }),
    );
  };
  const managerWarm = await sample(RUN_WARMUP, RUN_ITERATIONS, managerRun);
  // Finished runs stay in the manager for runRetentionMs: the heap they hold, per run.
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  for (let i = 0; i < RUN_ITERATIONS; i++) await managerRun();
  gc();
  const retainedPerRun = (process.memoryUsage().heapUsed - heapBefore) / RUN_ITERATIONS;
  let m = 0;
  gc();
  const managerNew = await sample(SESSION_WARMUP, SESSION_ITERATIONS, async () => {
    const id = `bench-manager-new-${++m}`;
    const result = await manager.run({ session_id: id, language: "javascript", code: "1 + 1" });
    expectTwo("manager new session", result);
    await manager.destroySession(id);
  });
  out(
    table(SUMMARY_HEADER, [
      summaryRow("in-process engine (QuickJsEngine.run)", inProcess.warm, TARGET_WARM),
      summaryRow("worker pool (WorkerPoolRuntime.run)", pooled.warm, TARGET_WARM),
      summaryRow("SessionManager.run (queue, gateway, RunResult)", managerWarm, TARGET_WARM),
      summaryRow("SessionManager.run, new session (+ destroy)", managerNew, TARGET_NEW),
    ]),
  );
  const heapLimit = getHeapStatistics().heap_size_limit;
  out(
    `manager heap held per finished run (kept runRetentionMs = ${defaultConfig().runRetentionMs / 60_000} min): ${bytes(retainedPerRun)}; at 3,000 runs/s that is ${bytes(retainedPerRun * 3_000 * (defaultConfig().runRetentionMs / 1_000))} in steady state (this process's V8 heap limit: ${bytes(heapLimit)})`,
  );

  section("4. Floors: quickjs-emscripten alone, none of our code (same engine build)");
  gc();
  const floor = await floors();
  out(
    table(SUMMARY_HEADER, [
      summaryRow("context.evalCode('1 + 1') on a live context", floor.rawEval),
      summaryRow("new runtime + context in a shared instance, eval, dispose", floor.rawNewContext),
      summaryRow("new WebAssembly instance (instantiateEngine, 64 MiB cap)", floor.newInstance),
      summaryRow("worker_threads postMessage echo of a run request (pool floor)", floor.workerEcho),
    ]),
  );

  section(
    "5. Peer: @sebastianwessel/quickjs 3.1.0 (same engine build, 64 MiB memoryLimit, 5 s executionTimeout)",
  );
  gc();
  const peer = await measurePeer({
    sessionWarmup: SESSION_WARMUP,
    sessionIterations: SESSION_ITERATIONS,
    runWarmup: RUN_WARMUP,
    runIterations: RUN_ITERATIONS,
  });
  anomalies.push(...peer.anomalies);
  out(
    table(SUMMARY_HEADER, [
      summaryRow("theirs: runSandboxed + evalCode('export default 1 + 1')", peer.newSandboxEval),
      summaryRow("theirs: runSandboxed, nothing evaluated", peer.newSandboxOnly),
      summaryRow("theirs: evalCode in an existing sandbox", peer.warmEval),
    ]),
  );
  const compare = (ours: string, oursValues: number[], theirs: string, theirsValues: number[]) => {
    const a = summarize(oursValues).p50;
    const b = summarize(theirsValues).p50;
    return [ours, theirs, ms(a), ms(b), `${(a / b).toFixed(2)}x`];
  };
  out();
  out(
    table(
      ["ours", "theirs", "ours p50", "theirs p50", "ours/theirs (below 1 = ours faster)"],
      [
        compare(
          "new session + first run + destroy, in-process",
          inProcess.createFirstRunDestroy,
          "runSandboxed + evalCode",
          peer.newSandboxEval,
        ),
        compare(
          "new session + first run + destroy, worker pool",
          pooled.createFirstRunDestroy,
          "runSandboxed + evalCode",
          peer.newSandboxEval,
        ),
        compare(
          "session create + destroy, in-process",
          inProcess.createDestroy,
          "runSandboxed, no eval",
          peer.newSandboxOnly,
        ),
        compare(
          "warm run, in-process engine",
          inProcess.warm,
          "evalCode in a live sandbox",
          peer.warmEval,
        ),
        compare("warm run, worker pool", pooled.warm, "evalCode in a live sandbox", peer.warmEval),
        compare(
          "warm run, SessionManager",
          managerWarm,
          "evalCode in a live sandbox",
          peer.warmEval,
        ),
      ],
    ),
  );
  out(
    "note: ours gives each session its own WebAssembly instance and memory cap; theirs makes a context in one shared instance.",
  );

  await pool.close();
  await engine.close();

  section(
    `6. HTTP: POST /v1/runs of \`1 + 1\`, ${CONNECTIONS} connections x ${DURATION_S} s, one warm session per connection`,
  );
  const httpHeader = ["setup", "runs/s", "p50", "p99", "non-2xx", "errors", "status codes"];
  const rows: string[][] = [];
  const child = await startChildServer();
  let statsBefore = await child.stats();
  const separate = await runLoad(child.url, {
    connections: CONNECTIONS,
    durationS: DURATION_S,
    warmupS: 2,
    sessionPrefix: "http",
    beforeMeasure: async () => {
      statsBefore = await child.stats();
    },
  });
  const statsAfter = await child.stats();
  await child.close();
  rows.push(...httpRows("server in its own process", separate));
  let inProcessLoad: LoadResult | null = null;
  if (HTTP_INPROCESS) {
    gc();
    const url = await server.listen();
    inProcessLoad = await runLoad(url, {
      connections: CONNECTIONS,
      durationS: DURATION_S,
      warmupS: 2,
      sessionPrefix: "http-inproc",
    });
    rows.push(
      ...httpRows("server in the bench process (shares autocannon's thread)", inProcessLoad),
    );
  }
  out(table(httpHeader, rows));
  const perRunUs = (cpuS: number, responses: number) =>
    responses > 0 ? `${((cpuS * 1e6) / responses).toFixed(0)} µs CPU per run` : "n/a";
  const serverCpuS =
    (statsAfter.cpu.user + statsAfter.cpu.system - statsBefore.cpu.user - statsBefore.cpu.system) /
    1e6;
  out(
    `own process: server ${serverCpuS.toFixed(1)} s CPU in ${separate.result.duration.toFixed(1)} s (${perRunUs(serverCpuS, separate.responses)}, main + worker threads); autocannon ${separate.cpuS.toFixed(1)} s CPU (${perRunUs(separate.cpuS, separate.responses)})`,
  );
  out(
    `own process: server RSS ${bytes(statsBefore.rss)} before, ${bytes(statsAfter.rss)} after (${statsAfter.sessions} sessions; finished runs are kept runRetentionMs)`,
  );
  if (inProcessLoad) {
    out(
      `bench process: server + autocannon ${inProcessLoad.cpuS.toFixed(1)} s CPU in ${inProcessLoad.result.duration.toFixed(1)} s (${perRunUs(inProcessLoad.cpuS, inProcessLoad.responses)})`,
    );
  }
  out(`first answer: ${JSON.stringify(separate.sample)}`);
  out(
    `load generator: autocannon 9 in this process, pipelining 1, HTTP/1.1 keep-alive on 127.0.0.1; runs/s = 2xx+non-2xx responses / duration; latency in whole ms`,
  );

  await server.close();

  const withEngines = process.env.BENCH_SKIP_ENGINES !== "1";
  section(
    `7. Snapshots: size, snapshot and restore time (QuickJS journal${withEngines ? "; Python journal and image" : ""})`,
  );
  gc();
  out(await snapshotBench(withEngines ? [QUICKJS_TARGET, PYODIDE_TARGET] : [QUICKJS_TARGET]));

  if (process.env.BENCH_SKIP_ENGINES !== "1") {
    section("8. isolated-vm (V8 isolates) against raw isolated-vm and QuickJS");
    gc();
    await benchIsolatedVm();
    section("9. Python: Pyodide sessions against raw loadPyodide and @pydantic/monty");
    gc();
    await benchPyodide();
  }

  section("Notes");
  if (anomalies.length === 0) out("every timed run answered status ok, result 2");
  for (const line of anomalies) out(`unexpected: ${line}`);
  out(`load average at the end: ${loadAverage()} on ${os.availableParallelism()} cores`);
  out(`total bench time ${((nowMs() - benchStart) / 1000).toFixed(1)} s`);
}

await main();
