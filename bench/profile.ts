/**
 * A focused workload to profile one path with `node --cpu-prof` (not part of `npm run bench`):
 *
 *   node --cpu-prof --cpu-prof-dir=.scratch/prof bench/profile.ts warm     # warm run, in-process engine
 *   node --cpu-prof --cpu-prof-dir=.scratch/prof bench/profile.ts manager  # warm run via SessionManager (in-process engine)
 *   node --cpu-prof --cpu-prof-dir=.scratch/prof bench/profile.ts create   # session create + first run + destroy
 *   node bench/cpuprofile-top.ts .scratch/prof/<file>.cpuprofile           # top frames
 *
 * @module
 */
import { createQuickJsEngine } from "../runtimes/quickjs/index.ts";
import {
  DEFAULT_SESSION_LIMITS,
  type LanguageRuntime,
  RuntimeRegistry,
  SessionManager,
  ToolGateway,
  ToolRegistry,
} from "../src/index.ts";
import { nowMs } from "./stats.ts";

const mode = process.argv[2] ?? "warm";
const iterations = Number(process.argv[3] ?? (mode === "create" ? 2_000 : 50_000));
const LIMITS = { ...DEFAULT_SESSION_LIMITS };
const TOOLS = new ToolRegistry();
let counter = 0;

async function runOn(runtime: LanguageRuntime, sessionId: string): Promise<unknown> {
  const runId = `r${++counter}`;
  const controller = new AbortController();
  const gateway = new ToolGateway({
    registry: TOOLS,
    sessionId,
    runId,
    maxExternalCalls: LIMITS.max_external_calls,
    deadline: performance.now() + LIMITS.wall_ms,
    signal: controller.signal,
  });
  const outcome = await runtime.run({
    runId,
    sessionId,
    language: "javascript",
    code: "1 + 1",
    inputs: {},
    limits: LIMITS,
    validateOnly: false,
    tools: gateway,
    signal: controller.signal,
  });
  gateway.settle();
  return outcome;
}

const engine = await createQuickJsEngine();
const start = nowMs();
if (mode === "warm") {
  await engine.createSession("s", LIMITS, "javascript");
  for (let i = 0; i < iterations; i++) await runOn(engine, "s");
} else if (mode === "manager") {
  const runtimes = new RuntimeRegistry();
  runtimes.register(engine);
  const manager = new SessionManager({
    runtimes,
    tools: TOOLS,
    defaults: LIMITS,
    ceilings: LIMITS,
    defaultLanguage: "javascript",
  });
  for (let i = 0; i < iterations; i++) await manager.run({ session_id: "s", code: "1 + 1" });
  await manager.close();
} else {
  for (let i = 0; i < iterations; i++) {
    await engine.createSession(`s${i}`, LIMITS, "javascript");
    await runOn(engine, `s${i}`);
    await engine.destroySession(`s${i}`);
  }
}
const elapsed = nowMs() - start;
process.stdout.write(
  `${mode}: ${iterations} iterations in ${elapsed.toFixed(0)} ms (${((elapsed / iterations) * 1000).toFixed(1)} µs each)\n`,
);
await engine.close();
