/**
 * The wall clock and the entropy source of the interpreter thread, pinned while a run is
 * active so that a journal can replay it exactly (docs/snapshots.md "Python: randomness and
 * the clock"). Loaded by ./interpreter.ts only; no run-time imports beyond Node built-ins.
 *
 * Everything in CPython-on-Emscripten that reads the wall clock ends in one JavaScript call,
 * `Date.now()` (Emscripten's `clock_time_get` for `CLOCK_REALTIME`: `time.time`, `time_ns`,
 * `datetime.now`/`utcnow`/`today`, `date.today`, `time.localtime()`/`ctime()`/`strftime()`
 * without a time, `uuid1`, and the timestamps MEMFS gives files), and everything that reads
 * entropy ends in another, `randomFillSync` of `node:crypto` (Emscripten's `random_get` and
 * `/dev/urandom`: `os.urandom`, `secrets`, `uuid4`, `random.SystemRandom`, `random.Random()`
 * without a seed). {@link installPinning} replaces both once; while a run is pinned
 * ({@link beginPinnedRun}) they answer from the run's {@link PinnedRun}, and between runs
 * they are the real ones. Monotonic clocks (`time.monotonic`, `perf_counter`, asyncio's
 * loop time: `performance.now()`) stay real: they time sleeps, timeouts and limits.
 *
 * Nothing here is a security boundary: guest code reaches this realm and can undo the
 * pinning, which only makes its own session's journal diverge (and be refused on restore).
 *
 * @module
 */
import nodeCrypto, { type Cipheriv, createCipheriv, createHash } from "node:crypto";

/** What a run asks of the pinned sources (part of the run request). */
export interface PinningRequest {
  /** Four unsigned 32-bit integers: the run's seed. */
  seed: readonly [number, number, number, number];
  /** Clock values to answer, in order (a replay), or null: read the real clock and record it. */
  clock: readonly number[] | null;
  /** Most clock values one run records (`MAX_RECORDED_CLOCK_READS` of the server). */
  maxClockReads: number;
}

/** The clock reads of a run, as the host's `RunClock` reports them. */
export interface ClockRecord {
  values: number[];
  /** False when more were read than recorded, or a replay read past its values. */
  complete: boolean;
}

/** The seed as 16 bytes, each word big-endian. */
function seedBytes(seed: readonly number[]): Buffer {
  const bytes = Buffer.alloc(16);
  for (let i = 0; i < 4; i++) bytes.writeUInt32BE((seed[i] ?? 0) >>> 0, i * 4);
  return bytes;
}

/**
 * SHA-256 of `sandbox-runner/python/<label>`, a NUL and the seed's 16 bytes. One-way, so that
 * what one stream reveals (Mersenne Twister's state is recoverable from 624 outputs, and its
 * seeding is invertible) says nothing about the seed or the other stream.
 */
function derive(label: "random" | "entropy", seed: readonly number[]): Buffer {
  return createHash("sha256")
    .update(`sandbox-runner/python/${label}\0`)
    .update(seedBytes(seed))
    .digest();
}

/** The integer (hex) `random.seed` gets at a session's first executed run. */
export function pythonRandomSeed(seed: readonly number[]): string {
  return derive("random", seed).toString("hex");
}

/** One run's pinned clock and entropy. */
export class PinnedRun {
  readonly #replay: readonly number[] | null;
  readonly #maxReads: number;
  readonly #values: number[] = [];
  readonly #keystream: Cipheriv;
  #reads = 0;
  #complete = true;

  constructor(request: PinningRequest) {
    this.#replay = request.clock;
    this.#maxReads = request.maxClockReads;
    // AES-256-CTR from a zero counter: a keystream as unpredictable as the seed is secret.
    this.#keystream = createCipheriv(
      "aes-256-ctr",
      derive("entropy", request.seed),
      Buffer.alloc(16),
    );
  }

  /** One clock read, epoch ms: the next replayed value, else the real clock (recorded). */
  now(real: () => number): number {
    const index = this.#reads++;
    let value: number;
    if (this.#replay && index < this.#replay.length) value = this.#replay[index]!;
    else {
      if (this.#replay) this.#complete = false;
      value = real();
    }
    if (this.#values.length < this.#maxReads) this.#values.push(value);
    else this.#complete = false;
    return value;
  }

  /** Fills `view` with the next bytes of the run's keystream. */
  fill(view: Uint8Array): void {
    view.set(this.#keystream.update(Buffer.alloc(view.byteLength)));
  }

  get record(): ClockRecord {
    return { values: this.#values, complete: this.#complete };
  }
}

let active: PinnedRun | null = null;
let installed = false;

/** Replaces `Date.now` and `node:crypto`'s `randomFillSync` in this realm (once). */
export function installPinning(): void {
  if (installed) return;
  installed = true;
  const realNow = Date.now;
  const readReal = () => realNow.call(Date);
  Object.defineProperty(Date, "now", {
    value: function now(): number {
      return active ? active.now(readReal) : readReal();
    },
    writable: true,
    enumerable: false,
    configurable: true,
  });
  const crypto = nodeCrypto as unknown as Record<string, unknown>;
  const realFill = nodeCrypto.randomFillSync;
  crypto.randomFillSync = function randomFillSync<T extends NodeJS.ArrayBufferView>(
    buffer: T,
    offset?: number,
    size?: number,
  ): T {
    if (!active) return realFill.call(nodeCrypto, buffer, offset, size) as T;
    const start = offset ?? 0;
    const length = size ?? buffer.byteLength - start;
    active.fill(new Uint8Array(buffer.buffer, buffer.byteOffset + start, length));
    return buffer;
  };
}

/** Pins the clock and entropy to `request` until {@link endPinnedRun}. */
export function beginPinnedRun(request: PinningRequest): void {
  active = new PinnedRun(request);
}

/** Unpins; answers what the run read (null when no run was pinned). */
export function endPinnedRun(): ClockRecord | null {
  const record = active?.record ?? null;
  active = null;
  return record;
}
