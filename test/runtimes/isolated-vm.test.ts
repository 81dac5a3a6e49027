import { createIsolatedVmRuntime } from "../../runtimes/isolated-vm/index.ts";
import { type LanguageRuntime, WorkerPoolRuntime } from "../../src/index.ts";
import { runtimeContract } from "../runtime-contract.ts";

const killEngineOf = (runtime: LanguageRuntime, sessionId: string) =>
  runtime instanceof WorkerPoolRuntime && runtime.killWorkerOf(sessionId);

for (const language of ["javascript", "typescript"] as const) {
  runtimeContract({
    name: "isolated-vm",
    language,
    create: async () => createIsolatedVmRuntime({ processes: 2 }),
    killEngineOf,
    skip: [
      {
        reason:
          "V8's stack limit is bytes per thread, set by isolated-vm from the size of its worker thread's stack for every isolate of a process; a session cannot get its own depth (every session reaches about 87,000 simple frames here, docs/limits.md)",
        cases: ["maps max_stack_depth to roughly that many frames"],
      },
    ],
  });
}
