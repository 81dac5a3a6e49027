/**
 * The QuickJS backend: JavaScript and TypeScript sessions in QuickJS (quickjs-emscripten),
 * one WebAssembly instance per session, run in a pool of worker threads of the server
 * process.
 *
 * Why worker threads and not the server's own thread: guest code holds its thread while it
 * computes (up to cpu_ms), and C-level recursion in the engine (deep JSON, regexps) uses the
 * thread's native stack; a worker with a 32 MiB stack lets QuickJS's own stack check trip
 * first, and a stuck worker can be terminated without touching the server.
 *
 * Engine build: `@jitl/quickjs-wasmfile-release-sync` (Bellard's QuickJS, release, sync);
 * docs/runtimes.md says why.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import {
  type LanguageRuntime,
  type RuntimeInfo,
  type RuntimePlugin,
  spawnWorkerThread,
  WorkerPoolRuntime,
} from "../../src/index.ts";
import { QuickJsEngine } from "./engine.ts";
import { loadEngineBuild } from "./memory.ts";

/** The engine build used unless configured otherwise. */
export const DEFAULT_VARIANT = "@jitl/quickjs-wasmfile-release-sync";

/** Options of {@link createQuickJsRuntime}. */
export interface QuickJsRuntimeOptions {
  /** Worker threads (default: the machine's parallelism, at least 2). */
  threads?: number;
  /** npm package of the engine build (default {@link DEFAULT_VARIANT}). */
  variant?: string;
  /** Native stack of each worker thread in MiB (default 32); must dwarf QuickJS's 1 MiB cap. */
  stackSizeMb?: number;
  /** Wall time past `wall_ms` before a stuck worker is terminated, in ms (default 500). */
  watchdogGraceMs?: number;
  /** Start every worker thread at once (default: on first use; the server's plugin starts them). */
  prestart?: boolean;
}

/** What a worker thread receives. */
export interface QuickJsWorkerOptions {
  variant: string;
  info: RuntimeInfo;
}

const requireHere = createRequire(import.meta.url);

/** Describes the backend for a given engine build (exact build: package version and wasm digest). */
export function quickJsInfo(variant: string = DEFAULT_VARIANT): RuntimeInfo {
  const packageJson = JSON.parse(
    readFileSync(requireHere.resolve(`${variant}/package.json`), "utf8"),
  ) as {
    version: string;
  };
  const wasm = readFileSync(requireHere.resolve(`${variant}/wasm`));
  const digest = createHash("sha256").update(wasm).digest("hex").slice(0, 16);
  return {
    id: "quickjs",
    languages: ["javascript", "typescript"],
    engine: `quickjs (${variant}@${packageJson.version}, wasm sha256:${digest})`,
    isolation: "worker_thread",
    limits: {
      memory_mb: {
        support: "exact",
        note: "caps the session's whole WebAssembly memory (engine included) at 64 KiB page granularity; uncatchable",
      },
      cpu_ms: {
        support: "exact",
        note: "thread CPU time while guest code runs, polled every few thousand bytecodes",
      },
      wall_ms: {
        support: "exact",
        note: "polled like cpu_ms; a worker stuck in one native operation is terminated at wall_ms + 500 ms",
      },
      max_stdout_bytes: {
        support: "exact",
        note: "stdout and stderr each, cut on a UTF-8 boundary",
      },
      max_external_calls: {
        support: "exact",
        note: "the call past the budget is denied and ends the run",
      },
      max_stack_depth: {
        support: "approximate",
        note: "QuickJS stack bytes = (depth + 24) × 192; a simple recursive function gets about depth + 20 frames, frames with many locals fewer; capped at 1 MiB (~5,400 frames)",
      },
    },
    snapshotKinds: [],
  };
}

/** Creates the QuickJS backend (a pool of worker threads). */
export function createQuickJsRuntime(options: QuickJsRuntimeOptions = {}): LanguageRuntime {
  const variant = options.variant ?? DEFAULT_VARIANT;
  const info = quickJsInfo(variant);
  const workerOptions: QuickJsWorkerOptions = { variant, info };
  return new WorkerPoolRuntime({
    info,
    ...(options.threads === undefined ? {} : { size: options.threads }),
    ...(options.watchdogGraceMs === undefined ? {} : { watchdogGraceMs: options.watchdogGraceMs }),
    sharedMemory: true,
    ...(options.prestart ? { prestart: true } : {}),
    spawn: (cancelBuffer) =>
      spawnWorkerThread(
        {
          url: new URL("./worker.ts", import.meta.url),
          options: workerOptions,
          resourceLimits: { stackSizeMb: options.stackSizeMb ?? 32 },
        },
        cancelBuffer,
      ),
  });
}

/**
 * Creates the engine in the calling thread, without workers: for benchmarks and embedding.
 * Guest code then holds the caller's thread, and deep C-level recursion can overflow the
 * caller's native stack (answered as STACK_LIMIT with a session reset); prefer
 * {@link createQuickJsRuntime} in a server.
 */
export async function createQuickJsEngine(
  variant: string = DEFAULT_VARIANT,
): Promise<QuickJsEngine> {
  return new QuickJsEngine({
    build: await loadEngineBuild(variant),
    info: { ...quickJsInfo(variant), isolation: "in_process" },
  });
}

/** The plugin the server loads from configuration (`runtimes: [{"module": ".../quickjs/index.ts"}]`). */
export const plugin: RuntimePlugin = {
  kind: "runtime",
  id: "quickjs",
  create: (options) =>
    createQuickJsRuntime({ prestart: true, ...(options as QuickJsRuntimeOptions) }),
};
