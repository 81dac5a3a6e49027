/**
 * The interpreter thread's realm, prepared before Pyodide loads (./interpreter.ts):
 *
 * - JSPI is removed, so Python runs on this thread's large native stack rather than on V8's
 *   ~1 MiB stack-switching stacks, where C-level recursion overflowed before CPython's own
 *   check (docs/runtimes.md).
 * - `WebAssembly.Memory.prototype.grow` is gated: the serving interpreter's memory cannot
 *   grow past the run's `memory_mb`, whoever asks.
 * - `WebAssembly.instantiate` can be told the size of a session image's memory: Pyodide's
 *   interpreter exports its own memory (the base image's size), and restoring a larger image
 *   into it would not fit; the memory is grown to the image's size before Pyodide copies it.
 * - The wall clock and entropy are pinned while a run is (./pinned.ts).
 * - `process.binding("constants")`, refused under Node's permission model, is answered: Pyodide
 *   reads fs constants from it.
 *
 * No run-time imports beyond Node built-ins and the backend's dependency-free modules.
 *
 * @module
 */
import { constants as fsConstants } from "node:fs";
import { installPinning } from "./pinned.ts";

const WASM_PAGE_BYTES = 65_536;

/** The memory gate of the serving interpreter. */
export interface MemoryGate {
  /** Gates `memory` (the interpreter's, from now on) and no other. */
  gate(memory: WebAssembly.Memory): void;
  /** Starts a run whose memory may grow to `capBytes`. */
  startRun(capBytes: number): void;
  /** The next module instantiated gets a memory of at least `bytes` (a session image's). */
  reserve(bytes: number): void;
}

/**
 * Prepares the realm (see the module comment), once. `exhausted` is called when an
 * allocation is refused for good (Emscripten tries three sizes before it fails).
 */
export function prepareRealm(exhausted: () => void): MemoryGate {
  const wasm = WebAssembly as unknown as Record<string, unknown>;
  delete wasm.Suspending;
  delete wasm.promising;

  let gatedMemory: WebAssembly.Memory | null = null;
  let capBytes = Number.POSITIVE_INFINITY;
  let refusedInARow = 0;
  const realGrow = WebAssembly.Memory.prototype.grow;
  function gatedGrow(this: WebAssembly.Memory, deltaPages: number): number {
    if (this === gatedMemory) {
      const next = this.buffer.byteLength + deltaPages * WASM_PAGE_BYTES;
      if (next > capBytes) {
        refusedInARow += 1;
        if (refusedInARow >= 3) exhausted();
        throw new RangeError("WebAssembly.Memory.grow(): the session's memory_mb is reached");
      }
      refusedInARow = 0;
    }
    return realGrow.call(this, deltaPages);
  }
  Object.defineProperty(WebAssembly.Memory.prototype, "grow", {
    value: gatedGrow,
    writable: false,
    configurable: false,
    enumerable: false,
  });

  let reservedBytes = 0;
  const realInstantiate = WebAssembly.instantiate;
  const instantiate = async function instantiate(
    this: unknown,
    ...args: Parameters<typeof WebAssembly.instantiate>
  ) {
    const result = await (realInstantiate as (...a: unknown[]) => Promise<unknown>).apply(
      WebAssembly,
      args,
    );
    const instance =
      result instanceof WebAssembly.Instance
        ? result
        : (result as { instance?: WebAssembly.Instance }).instance;
    const memory = instance?.exports.memory;
    if (reservedBytes > 0 && memory instanceof WebAssembly.Memory) {
      const missing = reservedBytes - memory.buffer.byteLength;
      reservedBytes = 0;
      if (missing > 0) realGrow.call(memory, Math.ceil(missing / WASM_PAGE_BYTES));
    }
    return result;
  };
  Object.defineProperty(WebAssembly, "instantiate", {
    value: instantiate,
    writable: true,
    configurable: true,
  });

  installPinning();

  const processWithBinding = process as unknown as { binding: (name: string) => unknown };
  const originalBinding = processWithBinding.binding;
  processWithBinding.binding = (name: string) =>
    name === "constants" ? { fs: fsConstants, os: {} } : originalBinding.call(process, name);

  return {
    gate(memory) {
      gatedMemory = memory;
      Object.preventExtensions(memory);
    },
    startRun(bytes) {
      capBytes = bytes;
      refusedInARow = 0;
    },
    reserve(bytes) {
      reservedBytes = bytes;
    },
  };
}
