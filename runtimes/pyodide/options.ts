/**
 * Options of the Pyodide backend and the figures it reports (docs/configuration.md).
 *
 * @module
 */
import type { ContainmentSetting } from "./containment.ts";
import type { ImageState } from "./image.ts";

/** Modules in the base image unless configured otherwise. */
export const DEFAULT_PRELOAD_MODULES: readonly string[] = [
  "asyncio",
  "base64",
  "collections",
  "copy",
  "csv",
  "dataclasses",
  "datetime",
  "decimal",
  "enum",
  "fractions",
  "functools",
  "hashlib",
  "itertools",
  "json",
  "math",
  "random",
  "re",
  "statistics",
  "string",
  "textwrap",
  "typing",
  "urllib.parse",
  "uuid",
];

/** Options of {@link PyodideRuntime} (all optional; docs/configuration.md). */
export interface PyodideRuntimeOptions {
  /** Ready interpreters kept in the pool (default 2; 0 starts one per session on demand). */
  poolSize?: number;
  /** Pool processes starting at once (default 1). */
  refillConcurrency?: number;
  /** Least time between two pool starts, in ms (default 0). */
  refillIntervalMs?: number;
  /** Start the pool (and build the base image if needed) at creation (default false). */
  prestart?: boolean;
  /** Where base images are cached (default `<repository>/.data/pyodide`). */
  cacheDir?: string;
  /** Python modules imported into the base image: faster first imports, more memory per interpreter. */
  preloadModules?: readonly string[];
  /** `"auto"` (default), `"none"`, or `{ wrapper: [...] }` (./containment.ts). */
  containment?: ContainmentSetting;
  /** With `"auto"`, run uncontained where namespaces are unavailable instead of refusing (default false). */
  allowUncontained?: boolean;
  /** `uid:gid` a child runs as when the server is root (default `"65534:65534"`; null keeps root). */
  runAs?: string | null;
  /** Time a run gets to stop after its interrupt before the interpreter is terminated, in ms (default 200). */
  interruptGraceMs?: number;
  /** Time past `wall_ms` + `interruptGraceMs` before the whole process is killed, in ms (default 1000). */
  watchdogGraceMs?: number;
  /**
   * Time a process gets to make or load a session image, in ms (default 30000); past it the
   * process is ended (and a session it held starts empty at its next run).
   */
  imageTimeoutMs?: number;
  /** Native stack of the interpreter thread, in MiB (default 128). */
  interpreterStackMb?: number;
  /** C stack CPython may use before a RecursionError, in KiB (default 512). */
  cStackKb?: number;
  /** V8 heap cap of the interpreter thread, in MiB (default 256). */
  interpreterHeapMb?: number;
  /** Resident memory a process may use beyond its idle size and memory_mb before it is stopped, in MiB (default 256). */
  processMemoryHeadroomMb?: number;
  /**
   * V8's WebAssembly compilers for the interpreter: `"optimizing"` (default: baseline code
   * first, hot functions optimized) or `"baseline"` (Liftoff only: about 20 MiB less per
   * interpreter, Python about 1.9× slower; docs/runtimes.md).
   */
  wasmCompiler?: "optimizing" | "baseline";
}

/** What {@link PyodideRuntime.stats} reports (served by `GET /v1/runtimes`). */
export interface PyodidePoolStats {
  /** Configured ready interpreters, and how many are ready and starting now. */
  pool: {
    size: number;
    ready: number;
    starting: number;
    refillConcurrency: number;
    refillIntervalMs: number;
  };
  /** Sessions holding a process. */
  sessions: number;
  /** Processes started since creation, sessions that had to wait for one, and failed starts. */
  started: number;
  coldStarts: number;
  failedStarts: number;
  lastStartError: string | null;
  /** Median spawn-to-ready time of recent starts, in ms. */
  startMsP50: number | null;
  /** Memory of one ready interpreter: resident and proportional set size of its process (Linux), and its WebAssembly memory. */
  idleInterpreter: { rssBytes: number | null; pssBytes: number | null; wasmBytes: number | null };
  /** The base image, once known. */
  image: ImageState | null;
  /** How processes are contained. */
  containment: string | null;
}
