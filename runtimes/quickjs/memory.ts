/**
 * The QuickJS backend's memory limit: each session gets its own WebAssembly instance whose
 * linear memory may not grow past the session's `memory_mb`.
 *
 * Why not QuickJS's own `setMemoryLimit`: in this build `malloc_usable_size` is unavailable,
 * so QuickJS counts 8 bytes per allocation and its limit only stops single allocations larger
 * than the limit (measured: 200 × 1 MiB strings under a 20 MiB limit all succeeded). And its
 * out-of-memory error is catchable. Instead we own the `WebAssembly.Memory` the engine runs
 * in: Emscripten grows it through `memory.grow`, which we gate. A refused growth makes
 * `malloc` fail, QuickJS throws, and the gate remembers it; the engine then stops the guest
 * (uncatchably, through the interrupt handler) and the run ends `resource_exhausted`.
 *
 * The engine's linear memory starts at 16 MiB (the build's INITIAL_MEMORY). For a cap below
 * that, the difference is reserved up front with one `malloc` that is never touched (so it
 * costs address space, not resident memory).
 *
 * Source: quickjs-emscripten-core's `newVariant({ wasmModule, wasmMemory })`.
 * @module
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import {
  newQuickJSWASMModuleFromVariant,
  newVariant,
  type QuickJSSyncVariant,
  type QuickJSWASMModule,
} from "quickjs-emscripten-core";

/** Bytes in one WebAssembly page. */
export const WASM_PAGE_BYTES = 65_536;
/** The engine build's initial linear memory, in bytes (Emscripten INITIAL_MEMORY). */
export const INITIAL_MEMORY_BYTES = 16 * 1_048_576;
/** Largest linear memory Emscripten will ask for (its 2 GiB heap maximum). */
const MAX_MEMORY_PAGES = 32_768;

const requireHere = createRequire(import.meta.url);

/** A loaded engine build: its variant and compiled WebAssembly module (compiled once per thread). */
export interface EngineBuild {
  readonly variant: QuickJSSyncVariant;
  readonly wasmModule: WebAssembly.Module;
  /** npm package the build comes from, e.g. `@jitl/quickjs-wasmfile-release-sync`. */
  readonly packageName: string;
}

/** Loads and compiles an engine build from its npm package. */
export async function loadEngineBuild(packageName: string): Promise<EngineBuild> {
  const imported = (await import(packageName)) as { default: QuickJSSyncVariant };
  const wasmPath = requireHere.resolve(`${packageName}/wasm`);
  const wasmModule = await WebAssembly.compile(readFileSync(wasmPath));
  return { variant: imported.default, wasmModule, packageName };
}

/**
 * A session's linear memory with a growth gate. `capBytes` may change between runs
 * (per-run `memory_mb`); growth beyond it is refused.
 */
export class GatedMemory {
  readonly memory: WebAssembly.Memory;
  #capBytes: number;
  #deniedStreak = 0;
  #exhausted = false;

  constructor(capBytes: number) {
    this.#capBytes = capBytes;
    this.memory = new WebAssembly.Memory({
      initial: INITIAL_MEMORY_BYTES / WASM_PAGE_BYTES,
      maximum: MAX_MEMORY_PAGES,
    });
    const grow = WebAssembly.Memory.prototype.grow;
    // Emscripten calls `memory.grow(pages)` on this very object; an own property shadows the
    // prototype method for it and for nobody else.
    Object.defineProperty(this.memory, "grow", {
      value: (deltaPages: number) => {
        const next = this.memory.buffer.byteLength + deltaPages * WASM_PAGE_BYTES;
        if (next > this.#capBytes) {
          // Emscripten retries a failed resize three times with smaller sizes, then fails
          // the allocation; three refusals in a row mean an allocation failed.
          this.#deniedStreak += 1;
          if (this.#deniedStreak >= 3) this.#exhausted = true;
          throw new RangeError("memory limit");
        }
        this.#deniedStreak = 0;
        return grow.call(this.memory, deltaPages);
      },
    });
  }

  /** Current cap in bytes. */
  get capBytes(): number {
    return this.#capBytes;
  }

  /** Sets the cap (bytes); it never takes back memory already grown. */
  set capBytes(bytes: number) {
    this.#capBytes = bytes;
  }

  /** Linear memory size now, in bytes (it never shrinks). */
  get sizeBytes(): number {
    return this.memory.buffer.byteLength;
  }

  /**
   * Whether an allocation has failed against the cap since the last {@link reset}. A check
   * can only run between engine calls, where a refused resize is always complete, so a
   * non-zero streak means the last resize failed.
   */
  get exhausted(): boolean {
    return this.#exhausted || this.#deniedStreak > 0;
  }

  /** Forgets a past failure (start of a run). */
  reset(): void {
    this.#exhausted = false;
    this.#deniedStreak = 0;
  }
}

/** One engine instance: a QuickJS module bound to its own gated memory. */
export interface EngineInstance {
  readonly module: QuickJSWASMModule;
  readonly memory: GatedMemory;
  /** Emscripten's `malloc`, used once for the reservation below 16 MiB. */
  readonly malloc: ((bytes: number) => number) | null;
}

/** Instantiates the build with a fresh gated memory of `capBytes`. */
export async function instantiateEngine(
  build: EngineBuild,
  capBytes: number,
): Promise<EngineInstance> {
  const memory = new GatedMemory(capBytes);
  const variant = newVariant(build.variant, {
    wasmModule: build.wasmModule,
    wasmMemory: memory.memory,
  });
  const module = await newQuickJSWASMModuleFromVariant(variant);
  // The Emscripten module is private to quickjs-emscripten-core; `_malloc` is a stable export
  // of every build. Without it, caps below 16 MiB fall back to 16 MiB.
  const emscripten = (module as unknown as { module?: { _malloc?: (bytes: number) => number } })
    .module;
  const malloc =
    typeof emscripten?._malloc === "function" ? emscripten._malloc.bind(emscripten) : null;
  return { module, memory, malloc };
}
