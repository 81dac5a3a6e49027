/**
 * The Pyodide backend: Python sessions (CPython 3.14 compiled to WebAssembly, from the
 * `pyodide` npm package, offline, standard library only), each in its own contained child
 * process, started from a cached base image so a ready interpreter is waiting when a session
 * is created.
 *
 * Layout: ./runtime.ts (server side: sessions, runs, watchdog), ./pool.ts (ready processes),
 * ./setup.ts (containment, cache, base image, child command lines), ./process.ts (one child
 * and its protocol), ./containment.ts (namespaces, permission model, environment),
 * ./image.ts (the base image cache), ./frames.ts and ./protocol.ts (the wire), ./child.ts (a
 * child's supervisor thread), ./interpreter.ts and ./interpreter-support.ts (the Pyodide
 * thread), ./pinned.ts (the wall clock and entropy a run reads, pinned for journals),
 * ./prelude.py and ./prelude_results.py (the Python side), ./outcome.ts (report → RunResult
 * fields, live output).
 * docs/runtimes.md describes the design; docs/security.md what each layer stops.
 *
 * @module
 */
import type { RuntimeInfo, RuntimePlugin } from "../../src/index.ts";
import { imageKey, pyodideDistribution } from "./image.ts";
import { DEFAULT_PRELOAD_MODULES, type PyodideRuntimeOptions } from "./options.ts";
import { PyodideRuntime } from "./runtime.ts";

export {
  DEFAULT_PRELOAD_MODULES,
  type PyodidePoolStats,
  type PyodideRuntimeOptions,
} from "./options.ts";
export { PyodideRuntime } from "./runtime.ts";

/**
 * Describes the backend: exact Pyodide build, limits and how faithfully each is enforced.
 * The engine string ends with the key of the base image (`preloadModules` and the prelude
 * are part of it): session images restore only where it is the same.
 */
export function pyodideInfo(
  preloadModules: readonly string[] = DEFAULT_PRELOAD_MODULES,
): RuntimeInfo {
  const distribution = pyodideDistribution();
  return {
    id: "pyodide",
    languages: ["python"],
    engine: `pyodide ${distribution.version} (CPython 3.14, WebAssembly; standard library only, offline; base image ${imageKey(distribution, preloadModules)})`,
    isolation: "child_process",
    limits: {
      memory_mb: {
        support: "exact",
        note: "caps the interpreter's whole WebAssembly memory (about 30 MiB of it is the interpreter itself); crossing it ends the run even if Python catches MemoryError, and resets the session",
      },
      cpu_ms: {
        support: "exact",
        note: "CPU time of the interpreter thread, sampled every 10 ms; KeyboardInterrupt, then the interpreter is terminated (session reset) if it has not stopped 200 ms later",
      },
      wall_ms: {
        support: "exact",
        note: "a timer in the process; stops a run that computes, sleeps or awaits; the process is killed 1.2 s past wall_ms as a backstop",
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
        note: "Python frames (sys.setrecursionlimit above the cell's own frame); C-level recursion (deep json, repr) has its own 512 KiB C-stack budget and raises RecursionError",
      },
    },
    snapshotKinds: ["journal", "image"],
  };
}

/** Creates the Pyodide backend. Nothing starts until the first session unless `prestart` is set. */
export function createPyodideRuntime(options: PyodideRuntimeOptions = {}): PyodideRuntime {
  return new PyodideRuntime(pyodideInfo(options.preloadModules), options);
}

/** The plugin the server loads from configuration (`runtimes: [{"module": ".../pyodide/index.ts"}]`); it prestarts the pool. */
export const plugin: RuntimePlugin = {
  kind: "runtime",
  id: "pyodide",
  create: (options) =>
    createPyodideRuntime({ prestart: true, ...(options as PyodideRuntimeOptions) }),
};
