/**
 * The isolated-vm backend: JavaScript and TypeScript sessions in V8 isolates (isolated-vm 7),
 * each session its own isolate and context, in a pool of worker child processes.
 *
 * Why child processes and not the server's own process or threads: a V8 crash, a fatal
 * out-of-memory in an isolate, or isolated-vm's own "catastrophic" errors end the whole
 * process (its maintainers advise keeping isolates away from anything else). In a child, such
 * an end takes only the sessions of that child: their runs end `interrupted` /
 * `ENGINE_CRASHED` (or `MEMORY_LIMIT` for the isolate that ran out of memory), the server keeps
 * serving, and a fresh child takes the place (`WorkerPoolRuntime`).
 *
 * Each child runs Node with `--no-node-snapshot` (isolated-vm needs it on Node 20+), a capped
 * heap of its own (`--max-old-space-size`), Node's permission model (no file writes, no child
 * processes, reads only of this package's code) and an environment holding only `PATH`.
 * Guest code never runs in a child's Node isolate: only copied strings and numbers cross
 * (./guest.ts).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type LanguageRuntime,
  type RuntimeInfo,
  type RuntimePlugin,
  spawnChildProcess,
  WorkerPoolRuntime,
} from "../../src/index.ts";

/** Options of {@link createIsolatedVmRuntime}. All optional. */
export interface IsolatedVmRuntimeOptions {
  /** Child processes at most (default: the machine's parallelism, at least 2). */
  processes?: number;
  /** Start every child at once rather than on first use (default false). */
  prestart?: boolean;
  /**
   * Heap of each child's own Node isolate (`--max-old-space-size`), in MiB (default 256). It
   * holds what crosses the boundary (output, tool replies, results), not the sessions'
   * isolates, whose memory is each session's `memory_mb`.
   */
  hostHeapMb?: number;
  /** Time a guest slice may outlive its time budget before its isolate is disposed, in ms (default 250). */
  disposeGraceMs?: number;
  /**
   * Time a disposed isolate's thread may stay stuck in one native operation before its child
   * process ends itself, in ms (default 2,000).
   */
  stuckThreadLimitMs?: number;
  /** Time past `wall_ms` before the pool kills a child whose run has not answered, in ms (default 500). */
  watchdogGraceMs?: number;
  /** Run children under Node's permission model (default true). */
  permission?: boolean;
  /** A command to start each child through, e.g. `["unshare", "-rn"]` for a private network namespace. */
  wrapper?: string[];
}

/** What a child process receives (its last argument, JSON). */
export interface IsolatedVmChildOptions {
  /** The backend's {@link RuntimeInfo}, as the server computed it. */
  info: RuntimeInfo;
  /** See {@link IsolatedVmRuntimeOptions.disposeGraceMs}, in ms. */
  disposeGraceMs: number;
  /** See {@link IsolatedVmRuntimeOptions.stuckThreadLimitMs}, in ms. */
  stuckThreadLimitMs: number;
}

/** Default of {@link IsolatedVmRuntimeOptions.disposeGraceMs}, in ms. */
export const DEFAULT_DISPOSE_GRACE_MS = 250;
/** Default of {@link IsolatedVmRuntimeOptions.stuckThreadLimitMs}, in ms. */
export const DEFAULT_STUCK_THREAD_LIMIT_MS = 2_000;

const requireHere = createRequire(import.meta.url);
const packageRoot = fileURLToPath(new URL("../../", import.meta.url));

/**
 * Describes the backend: the exact engine build (isolated-vm version, V8 version of the Node
 * binary the children run, and the SHA-256 prefix of the native binary isolated-vm loads) and
 * how each limit is enforced (docs/limits.md has the measurements).
 * @param disposeGraceMs the backend's `disposeGraceMs` (default 250), quoted in a note.
 */
export function isolatedVmInfo(disposeGraceMs = DEFAULT_DISPOSE_GRACE_MS): RuntimeInfo {
  const manifest = requireHere.resolve("isolated-vm/package.json");
  const { version } = JSON.parse(readFileSync(manifest, "utf8")) as { version: string };
  // The prebuilt binary isolated-vm will load, found the way it finds it (node-gyp-build).
  const nodeGypBuild = createRequire(manifest)("node-gyp-build") as { path(dir: string): string };
  const binary = nodeGypBuild.path(dirname(manifest));
  const digest = createHash("sha256").update(readFileSync(binary)).digest("hex").slice(0, 16);
  const binaryName = binary.split(/[\\/]/).slice(-2).join("/");
  return {
    id: "isolated-vm",
    languages: ["javascript", "typescript"],
    engine: `isolated-vm ${version} (V8 ${process.versions.v8}, Node ${process.version}; ${binaryName} sha256:${digest})`,
    isolation: "child_process",
    limits: {
      memory_mb: {
        support: "approximate",
        note: "the isolate's memoryLimit, set when the session is created; past it the isolate is disposed (uncatchable, session reset). ArrayBuffers past it fail with a catchable RangeError; V8 can overshoot inside one allocation",
      },
      cpu_ms: {
        support: "approximate",
        note: "isolate CPU time (isolate.cpuTime); each slice of guest code runs with isolated-vm's timeout set to what is left (a steady-clock timer while the isolate runs), so CPU contention can stop a run early; the session is kept",
      },
      wall_ms: {
        support: "exact",
        note: `tool calls and timers included; a native operation V8 cannot interrupt gets its isolate disposed ${disposeGraceMs} ms past the limit (session reset)`,
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
        support: "unsupported",
        note: "V8's stack limit is bytes per thread, the same for every isolate of a process (8 MiB threads: about 87,000 simple frames); past it: STACK_LIMIT",
      },
    },
    snapshotKinds: ["journal"],
  };
}

/** Node flags of each child (see the module comment). */
function childExecArgv(options: IsolatedVmRuntimeOptions): string[] {
  const flags = ["--no-node-snapshot", `--max-old-space-size=${options.hostHeapMb ?? 256}`];
  if (options.permission ?? true) {
    const nodeModules = dirname(dirname(requireHere.resolve("isolated-vm/package.json")));
    flags.push(
      "--permission",
      "--allow-addons",
      "--disable-warning=SecurityWarning",
      `--allow-fs-read=${join(packageRoot, "package.json")}`,
      `--allow-fs-read=${join(packageRoot, "src")}`,
      `--allow-fs-read=${join(packageRoot, "runtimes", "isolated-vm")}`,
      `--allow-fs-read=${nodeModules}`,
      // node-gyp-build probes this file to tell musl from glibc.
      "--allow-fs-read=/etc/alpine-release",
    );
  }
  return flags;
}

/**
 * Creates the isolated-vm backend (isolated-vm 7, V8 isolates): a {@link WorkerPoolRuntime}
 * over child processes, each holding several sessions (new sessions go to the child with the
 * fewest). No child starts before the first session unless `prestart`. Its `createSession`
 * throws `SandboxError` `SESSION_EXISTS`, `LIMIT_EXCEEDS_CEILING` (memory_mb below 8 MiB) or
 * `ENGINE_CRASHED` (a child or an isolate could not start); runs resolve as outcomes, with
 * `interrupted` / `ENGINE_CRASHED` when a child dies under them (see docs/runtimes.md).
 */
export function createIsolatedVmRuntime(options: IsolatedVmRuntimeOptions = {}): LanguageRuntime {
  const disposeGraceMs = options.disposeGraceMs ?? DEFAULT_DISPOSE_GRACE_MS;
  const info = isolatedVmInfo(disposeGraceMs);
  const childOptions: IsolatedVmChildOptions = {
    info,
    disposeGraceMs,
    stuckThreadLimitMs: options.stuckThreadLimitMs ?? DEFAULT_STUCK_THREAD_LIMIT_MS,
  };
  const execArgv = childExecArgv(options);
  return new WorkerPoolRuntime({
    info,
    ...(options.processes === undefined ? {} : { size: options.processes }),
    ...(options.watchdogGraceMs === undefined ? {} : { watchdogGraceMs: options.watchdogGraceMs }),
    ...(options.prestart ? { prestart: true } : {}),
    sharedMemory: false,
    spawn: () =>
      spawnChildProcess({
        module: new URL("./child.ts", import.meta.url),
        options: childOptions,
        execArgv,
        ...(options.wrapper ? { wrapper: options.wrapper } : {}),
      }),
  });
}

/**
 * The plugin the server loads from configuration
 * (`runtimes: [{"module": ".../isolated-vm/index.ts", "options": {...}}]`); `options` are
 * {@link IsolatedVmRuntimeOptions}.
 */
export const plugin: RuntimePlugin = {
  kind: "runtime",
  id: "isolated-vm",
  create: (options) => createIsolatedVmRuntime(options as IsolatedVmRuntimeOptions),
};
