/**
 * What the Pyodide backend resolves once before its first process: how children are
 * contained (./containment.ts), where the cache is, the base image (built if missing,
 * ./image.ts), and the exact command line of a child in each mode.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { SandboxError } from "../../src/index.ts";
import {
  type ChildCommand,
  type Containment,
  type ContainmentSetting,
  nodeFlags,
  resolveContainment,
} from "./containment.ts";
import {
  ensureDirectory,
  ensureImage,
  type ImageState,
  imageKey,
  imagePath,
  type PyodideDistribution,
  pyodideDistribution,
  usableCacheDir,
} from "./image.ts";
import { PyodideProcess } from "./process.ts";
import type { ChildOptions } from "./protocol.ts";

const RUNTIME_DIR = dirname(fileURLToPath(import.meta.url));
/** The repository (or installed package) this backend belongs to. */
export const REPOSITORY_ROOT = resolve(RUNTIME_DIR, "../..");

/** The options setup needs (resolved: every default applied). */
export interface SetupOptions {
  cacheDir: string;
  /** The cache directory was configured (no fallback when it is unusable). */
  cacheDirConfigured: boolean;
  preloadModules: readonly string[];
  containment: ContainmentSetting;
  allowUncontained: boolean;
  runAs: string | null;
  interpreterStackMb: number;
  cStackKb: number;
  interpreterHeapMb: number;
  interruptGraceMs: number;
  processMemoryHeadroomMb: number;
  wasmCompiler: "optimizing" | "baseline";
}

/** What setup resolved. */
export interface Setup {
  containment: Containment;
  image: ImageState;
  /** Key of the base image (./image.ts `imageKey`): what session images are deltas against. */
  imageKey: string;
  /** How to start a child that serves a session. */
  serve: ChildCommand;
  /** Size of an idle interpreter's WebAssembly memory, when the image was built here. */
  builtWasmBytes: number | null;
}

/** Hooks into the runtime that owns the setup. */
export interface SetupHooks {
  /** True once the runtime is closed (setup stops). */
  closed(): boolean;
  /** The image builder while it runs (so closing can kill it), then null. */
  building(process: PyodideProcess | null): void;
}

/**
 * Resolves containment and the base image.
 * @throws SandboxError `RUNTIME_UNAVAILABLE` (no containment and not allowed; cache or image
 *   unusable), `SERVICE_CLOSING`.
 */
export async function prepareSetup(options: SetupOptions, hooks: SetupHooks): Promise<Setup> {
  if (hooks.closed()) throw new SandboxError("SERVICE_CLOSING", "The runtime is closed.");
  const cacheDir = usableCacheDir(options.cacheDir, options.cacheDirConfigured);
  const rootDir = join(cacheDir, "root");
  ensureDirectory(rootDir);
  const distribution = pyodideDistribution();
  const path = imagePath(cacheDir, distribution, options.preloadModules);
  const containment = await resolveContainment({
    setting: options.containment,
    rootDir,
    runAs: options.runAs,
    nodePath: process.execPath,
    readPaths: [
      process.execPath,
      distribution.dir,
      RUNTIME_DIR,
      join(REPOSITORY_ROOT, "package.json"),
      cacheDir,
    ],
  });
  if (containment.kind === "none" && options.containment === "auto" && !options.allowUncontained) {
    throw new SandboxError(
      "RUNTIME_UNAVAILABLE",
      "Python sessions need Linux namespaces (unshare) to contain Pyodide, and they are not available here.",
      {
        hint: "Run on Linux with user namespaces enabled, or set the pyodide option allowUncontained (see docs/security.md).",
      },
    );
  }
  let builtWasmBytes: number | null = null;
  const image = await ensureImage(path, async () => {
    const builder = new PyodideProcess(
      containment,
      childCommand(options, distribution, "build", path),
    );
    hooks.building(builder);
    try {
      const built = await builder.image();
      builtWasmBytes = built.info.wasmBytes;
      return built;
    } finally {
      builder.kill();
      hooks.building(null);
    }
  });
  if (hooks.closed()) throw new SandboxError("SERVICE_CLOSING", "The runtime is closed.");
  return {
    containment,
    image,
    imageKey: imageKey(distribution, options.preloadModules),
    serve: childCommand(options, distribution, "serve", path),
    builtWasmBytes,
  };
}

/**
 * The command line of a child: this backend's `child.ts` under Node's permission model,
 * allowed to read the Pyodide package, this backend's directory, the repository's
 * `package.json` (module type) and, to serve, the image; a cold load (build mode) also reads
 * Pyodide's `ws` dependency.
 */
function childCommand(
  options: SetupOptions,
  distribution: PyodideDistribution,
  mode: ChildOptions["mode"],
  path: string,
): ChildCommand {
  const childOptions: ChildOptions = {
    mode,
    imagePath: mode === "serve" ? path : null,
    preloadModules: options.preloadModules,
    interpreterStackMb: options.interpreterStackMb,
    cStackBytes: options.cStackKb * 1_024,
    interpreterHeapMb: options.interpreterHeapMb,
    interruptGraceMs: options.interruptGraceMs,
    processMemoryHeadroomMb: options.processMemoryHeadroomMb,
  };
  const readDirs = [distribution.dir, RUNTIME_DIR];
  if (mode === "build") readDirs.push(packageDirOf("ws", distribution.dir));
  const readFiles = [join(REPOSITORY_ROOT, "package.json")];
  if (mode === "serve") readFiles.push(path);
  const command: ChildCommand = {
    nodePath: process.execPath,
    execArgv: [],
    entry: join(RUNTIME_DIR, "child.ts"),
    optionsJson: JSON.stringify(childOptions),
    readDirs,
    readFiles,
  };
  command.execArgv = [
    ...nodeFlags(command),
    ...(options.wasmCompiler === "baseline" ? ["--liftoff-only"] : []),
  ];
  return command;
}

/** Directory of a package as Node resolves it from `fromDir` (nearest `node_modules` upwards). */
function packageDirOf(name: string, fromDir: string): string {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", name);
    if (existsSync(join(candidate, "package.json"))) return candidate;
    if (dirname(dir) === dir) return join(fromDir, "node_modules", name);
  }
}
