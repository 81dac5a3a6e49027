/**
 * Build mode of the interpreter thread (./interpreter.ts): loads Pyodide cold, runs the
 * prelude (./prelude.py, ./prelude_results.py), imports the preloaded modules, and posts the
 * memory snapshot — the base image every interpreter of this build starts from (./image.ts).
 *
 * No run-time imports beyond Node built-ins and the backend's dependency-free modules.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { describe } from "./interpreter-support.ts";
import { type InterpreterMessage, PRELUDE_MODULES } from "./protocol.ts";

/** The part of Pyodide the build uses. */
interface BuildPyodide {
  runPython(code: string): unknown;
  globals: { set(key: string, value: unknown): void };
  makeMemorySnapshot(): Uint8Array;
  _module: { memory: WebAssembly.Memory };
}

/**
 * Builds the base image and posts it ("image"), or posts "failed".
 * @param startedMs `performance.now()` when the thread started.
 */
export async function buildBaseImage(
  loadPyodide: (options: Record<string, unknown>) => Promise<unknown>,
  preloadModules: readonly string[],
  post: (message: InterpreterMessage, transfer?: ArrayBuffer[]) => void,
  startedMs: number,
): Promise<void> {
  try {
    const pyodide = (await loadPyodide({
      stdout: () => {},
      stderr: () => {},
      env: { HOME: "/home/pyodide", LANG: "C.UTF-8" },
      _makeSnapshot: true,
      _sysExecutable: "python",
    })) as BuildPyodide;
    // The two prelude modules, as `_sandbox_results` and `_sandbox` (which imports the first).
    const sources: Record<string, string> = {};
    for (const [module, file] of PRELUDE_MODULES) {
      sources[module] = readFileSync(new URL(file, import.meta.url), "utf8");
    }
    pyodide.globals.set("__sandbox_sources__", JSON.stringify(sources));
    pyodide.runPython(
      [
        "import json, sys, types",
        "for _name, _source in json.loads(__sandbox_sources__).items():",
        "    _m = types.ModuleType(_name)",
        "    exec(compile(_source, '<sandbox>', 'exec'), _m.__dict__)",
        "    sys.modules[_name] = _m",
        `sys.modules['_sandbox']._prepare_image(${JSON.stringify(preloadModules)})`,
        "del _m, _name, _source, __sandbox_sources__",
      ].join("\n"),
    );
    const image = pyodide.makeMemorySnapshot();
    const info = {
      wasmBytes: pyodide._module.memory.buffer.byteLength,
      loadMs: performance.now() - startedMs,
    };
    post({ kind: "image", bytes: image, info }, [image.buffer as ArrayBuffer]);
  } catch (error) {
    post({ kind: "failed", message: describe(error) });
  }
}
