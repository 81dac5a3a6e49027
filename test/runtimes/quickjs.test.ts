import { createQuickJsRuntime } from "../../runtimes/quickjs/index.ts";
import { type LanguageRuntime, WorkerPoolRuntime } from "../../src/index.ts";
import { runtimeContract } from "../runtime-contract.ts";

const killEngineOf = (runtime: LanguageRuntime, sessionId: string) =>
  runtime instanceof WorkerPoolRuntime && runtime.killWorkerOf(sessionId);

for (const language of ["javascript", "typescript"] as const) {
  runtimeContract({
    name: "quickjs",
    language,
    create: async () => createQuickJsRuntime({ threads: 2 }),
    killEngineOf,
  });
}
