/**
 * The clock and randomness of one run, as backends pin them for journals (see
 * ../snapshot/journal.ts): a {@link RunClock} answers every clock read guest code makes
 * (`Date.now()`, `new Date()`, Python's `time.time()`), recording the values, or on replay
 * returning the recorded ones in order; its seed seeds the guest's `Math.random` (or Python's
 * `random`).
 *
 * Source: node:crypto (`getRandomValues`) for fresh seeds.
 * @module
 */
import { getRandomValues } from "node:crypto";
import type { RunDeterminism } from "./interface.ts";

/** Most clock values one run records; a run that reads more cannot be journaled exactly. */
export const MAX_RECORDED_CLOCK_READS = 10_000;

/** CSPRNG words drawn 1,024 at a time: one system call serves 256 seeds. */
const pool = new Uint32Array(1_024);
let poolIndex = pool.length;

/** A fresh seed: four unsigned 32-bit integers from the system's CSPRNG. */
export function freshSeed(): [number, number, number, number] {
  if (poolIndex + 4 > pool.length) {
    getRandomValues(pool);
    poolIndex = 0;
  }
  const seed: [number, number, number, number] = [
    pool[poolIndex]!,
    pool[poolIndex + 1]!,
    pool[poolIndex + 2]!,
    pool[poolIndex + 3]!,
  ];
  poolIndex += 4;
  return seed;
}

/** See the module comment. One per run. */
export class RunClock {
  /** The seed of the run's random generator. */
  readonly seed: [number, number, number, number];
  readonly #replay: readonly number[] | null;
  readonly #values: number[] = [];
  #reads = 0;
  #complete = true;

  /** @param determinism what the manager asked for; absent: a fresh seed and the real clock. */
  constructor(determinism?: RunDeterminism) {
    this.seed = determinism?.seed ?? freshSeed();
    this.#replay = determinism?.clock ?? null;
  }

  /** The seed as the prelude's `beginRun` takes it: `"a,b,c,d"`. */
  get seedText(): string {
    return this.seed.join(",");
  }

  /**
   * One clock read, in epoch ms: the next recorded value when replaying (past the recorded
   * ones, the real clock, and the run is marked incomplete), else the real clock.
   */
  now(): number {
    const index = this.#reads++;
    let value: number;
    if (this.#replay && index < this.#replay.length) value = this.#replay[index]!;
    else {
      if (this.#replay) this.#complete = false;
      value = Date.now();
    }
    if (this.#values.length < MAX_RECORDED_CLOCK_READS) this.#values.push(value);
    else this.#complete = false;
    return value;
  }

  /** What the run read, for {@link RuntimeRunOutcome.clock}. */
  get record(): { values: number[]; complete: boolean } {
    return { values: this.#values, complete: this.#complete };
  }
}
