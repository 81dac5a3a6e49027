import { createPyodideRuntime, type PyodideRuntime } from "../../runtimes/pyodide/index.ts";
import type { LanguageRuntime } from "../../src/index.ts";
import { runtimeContract } from "../runtime-contract.ts";

runtimeContract({
  name: "pyodide",
  language: "python",
  create: async () => {
    const runtime = createPyodideRuntime({ poolSize: 2 });
    await runtime.warmUp(1);
    return runtime;
  },
  killEngineOf: (runtime: LanguageRuntime, sessionId: string) =>
    (runtime as PyodideRuntime).killProcessOf(sessionId),
});
