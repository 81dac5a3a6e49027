/**
 * The peer: `@sebastianwessel/quickjs` (dev dependency), timed on the same snippet and the
 * same engine build as ours (`@jitl/quickjs-wasmfile-release-sync`, Bellard's QuickJS), so
 * the difference is the library around the engine, not the engine.
 *
 * Its API: `loadQuickJs(variant)` once, then `runSandboxed(fn, options)` creates a context
 * (in the one shared WebAssembly instance), calls `fn({ evalCode })` and disposes it.
 * `evalCode` evaluates an ES module; the value is its default export.
 *
 * @module
 */
import variantImport from "@jitl/quickjs-wasmfile-release-sync";
import { loadQuickJs, type SandboxOptions } from "@sebastianwessel/quickjs";
import type { QuickJSSyncVariant } from "quickjs-emscripten-core";
import { sample } from "./stats.ts";

/** Limits comparable to our defaults: 64 MiB, a wall-time limit. */
export const PEER_OPTIONS: SandboxOptions = {
  memoryLimit: 64 * 1_048_576,
  executionTimeout: 5_000,
};

/** The engine build's variant (its CJS/ESM typings confuse the default import's type). */
const variant = variantImport as unknown as QuickJSSyncVariant;

const SNIPPET = "export default 1 + 1";

export interface PeerTimings {
  /** `runSandboxed` with `evalCode` of the snippet: new sandbox, eval, dispose. */
  newSandboxEval: number[];
  /** `runSandboxed` with nothing evaluated: new sandbox and dispose. */
  newSandboxOnly: number[];
  /** `evalCode` of the snippet in one existing sandbox. */
  warmEval: number[];
  /** Problems seen (wrong answers), for the report. */
  anomalies: string[];
}

export async function measurePeer(options: {
  sessionWarmup: number;
  sessionIterations: number;
  runWarmup: number;
  runIterations: number;
}): Promise<PeerTimings> {
  const { runSandboxed } = await loadQuickJs(variant);
  const anomalies: string[] = [];
  const check = (what: string, value: unknown) => {
    const result = value as { ok?: boolean; data?: unknown };
    if (!result?.ok || result.data !== 2) {
      const text = JSON.stringify(value);
      if (anomalies.length < 3) anomalies.push(`peer ${what}: got ${text.slice(0, 200)}`);
    }
  };

  const newSandboxEval = await sample(
    options.sessionWarmup,
    options.sessionIterations,
    async () => {
      const result = await runSandboxed(async ({ evalCode }) => evalCode(SNIPPET), PEER_OPTIONS);
      check("new sandbox + eval", result);
    },
  );
  const newSandboxOnly = await sample(options.sessionWarmup, options.sessionIterations, () =>
    runSandboxed(async () => null, PEER_OPTIONS),
  );
  let warmEval: number[] = [];
  await runSandboxed(async ({ evalCode }) => {
    warmEval = await sample(options.runWarmup, options.runIterations, async () => {
      check("warm eval", await evalCode(SNIPPET));
    });
  }, PEER_OPTIONS);
  return { newSandboxEval, newSandboxOnly, warmEval, anomalies };
}
