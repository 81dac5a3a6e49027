/**
 * The pool of ready Pyodide processes: each has restored the base image, warmed up, and is
 * blocked waiting for a session.
 *
 * `size` processes are kept ready. Taking one starts a replacement in the background (50 ms
 * later, so the taker's first run does not compete with it for CPU), at most
 * `refillConcurrency` starts at a time and one every `refillIntervalMs`; starts that fail
 * back off (250 ms doubling, up to 30 s). With none ready, a taker waits for the next start
 * (a "cold" start); after three failures in a row with nothing starting, waiters are refused
 * with `RUNTIME_UNAVAILABLE`.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { SandboxError } from "../../src/index.ts";
import type { PyodideProcess } from "./process.ts";
import type { ReadyInfo } from "./protocol.ts";

/** Sizes of an {@link InterpreterPool}. */
export interface PoolOptions {
  /** Ready processes to keep (0: start one per taker). */
  size: number;
  /** Processes starting at once. */
  refillConcurrency: number;
  /** Least time between two starts, in ms. */
  refillIntervalMs: number;
}

/** What the pool reports (part of the backend's stats). */
export interface PoolFigures {
  ready: number;
  starting: number;
  /** Processes started since creation. */
  started: number;
  /** Takers that found no ready process and waited for a start. */
  coldStarts: number;
  failedStarts: number;
  lastStartError: string | null;
  /** Median spawn-to-ready time of recent starts, in ms. */
  startMsP50: number | null;
  /** Memory of the first ready process and its descendants (Linux), or what it reported. */
  idleRssBytes: number | null;
  idlePssBytes: number | null;
}

interface Waiter {
  resolve(process: PyodideProcess): void;
  reject(error: Error): void;
}

const KEPT_START_TIMES = 32;
/**
 * A replacement for a taken process starts this long after the take: starting a process
 * takes about half a second of CPU, and on a small machine it would slow the taker's first
 * run, which usually follows at once.
 */
const REFILL_AFTER_TAKE_MS = 50;

/** See the module comment. */
export class InterpreterPool {
  readonly #options: PoolOptions;
  readonly #spawn: () => PyodideProcess;
  readonly #onReady: (info: ReadyInfo) => void;
  readonly #ready: PyodideProcess[] = [];
  readonly #starting = new Set<PyodideProcess>();
  readonly #waiters: Waiter[] = [];
  readonly #all = new Set<PyodideProcess>();
  readonly #startTimes: number[] = [];
  #closed = false;
  #started = 0;
  #coldStarts = 0;
  #failedStarts = 0;
  #failureStreak = 0;
  #lastStartError: string | null = null;
  #lastStartAt = 0;
  #refillTimer: NodeJS.Timeout | null = null;

  /**
   * @param spawn starts one process (contained, serving the current base image).
   * @param onReady called with what each process reports when it becomes ready.
   */
  constructor(
    options: PoolOptions,
    spawn: () => PyodideProcess,
    onReady: (info: ReadyInfo) => void,
  ) {
    this.#options = options;
    this.#spawn = spawn;
    this.#onReady = onReady;
  }

  /** Starts processes until `size` are ready or starting. */
  refill(): void {
    if (this.#closed) return;
    const options = this.#options;
    while (
      this.#ready.length + this.#starting.size < options.size + this.#waiters.length &&
      this.#starting.size < options.refillConcurrency
    ) {
      const backoffMs =
        this.#failureStreak === 0 ? 0 : Math.min(30_000, 250 * 2 ** this.#failureStreak);
      const waitMs =
        this.#lastStartAt + Math.max(options.refillIntervalMs, backoffMs) - performance.now();
      if (waitMs > 0) {
        this.#refillTimer ??= setTimeout(() => {
          this.#refillTimer = null;
          this.refill();
        }, waitMs);
        return;
      }
      this.#start();
    }
  }

  /**
   * A ready process: one from the pool, or the next to start. Its replacement starts 50 ms
   * later, or, with `refill: false`, when the taker calls {@link refillSoon} (a restore,
   * which should not share the CPU with a starting process).
   * @throws SandboxError `RUNTIME_UNAVAILABLE` when starts keep failing; `SERVICE_CLOSING`.
   */
  take(options: { refill?: boolean } = {}): Promise<PyodideProcess> {
    if (this.#closed) return Promise.reject(closing());
    for (;;) {
      const process = this.#ready.shift();
      if (!process) break;
      if (process.alive) {
        if (options.refill !== false) this.refillSoon();
        return Promise.resolve(process);
      }
    }
    this.#coldStarts += 1;
    const waiting = new Promise<PyodideProcess>((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
    });
    // Someone is waiting: start now, whatever the refill pace.
    if (this.#starting.size < this.#waiters.length) this.#start();
    this.refill();
    return waiting;
  }

  /** Starts the refill 50 ms from now (see {@link take}). */
  refillSoon(): void {
    this.#refillTimer ??= setTimeout(() => {
      this.#refillTimer = null;
      this.refill();
    }, REFILL_AFTER_TAKE_MS);
  }

  /** Returns a process that was taken but not used. */
  giveBack(process: PyodideProcess): void {
    if (process.alive && !process.busy && !this.#closed) this.#ready.unshift(process);
    else process.kill();
  }

  /**
   * Waits until `count` processes (at most `size`) are ready.
   * @throws SandboxError `RUNTIME_UNAVAILABLE` when starts keep failing.
   */
  async warm(count: number): Promise<void> {
    this.refill();
    const wanted = Math.min(count, this.#options.size);
    while (this.#ready.length < wanted && !this.#closed) {
      if (this.#failureStreak > 3) {
        throw new SandboxError(
          "RUNTIME_UNAVAILABLE",
          this.#lastStartError ?? "Pyodide processes fail to start.",
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** The pool's figures now. */
  figures(): PoolFigures {
    const first = this.#ready[0];
    const memory = first?.pid === undefined ? null : processTreeMemory(first.pid);
    const times = [...this.#startTimes].sort((a, b) => a - b);
    return {
      ready: this.#ready.length,
      starting: this.#starting.size,
      started: this.#started,
      coldStarts: this.#coldStarts,
      failedStarts: this.#failedStarts,
      lastStartError: this.#lastStartError,
      startMsP50: times.length > 0 ? Math.round(times[Math.floor(times.length / 2)]!) : null,
      idleRssBytes: memory?.rssBytes ?? first?.readyInfo?.rssBytes ?? null,
      idlePssBytes: memory?.pssBytes ?? null,
    };
  }

  /** Kills every process the pool started (taken ones included) and refuses waiters. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#refillTimer ?? undefined);
    for (const process of this.#all) process.kill();
    this.#all.clear();
    this.#ready.length = 0;
    this.#starting.clear();
    for (const waiter of this.#waiters.splice(0)) waiter.reject(closing());
  }

  #start(): void {
    if (this.#closed) return;
    const process = this.#spawn();
    this.#started += 1;
    this.#lastStartAt = performance.now();
    this.#starting.add(process);
    this.#all.add(process);
    process.onExit(() => {
      this.#all.delete(process);
      const index = this.#ready.indexOf(process);
      if (index >= 0) this.#ready.splice(index, 1);
      this.refill();
    });
    process.ready.then(
      (info) => {
        this.#starting.delete(process);
        this.#failureStreak = 0;
        this.#onReady(info);
        this.#startTimes.push(process.startMs);
        if (this.#startTimes.length > KEPT_START_TIMES) this.#startTimes.shift();
        if (this.#closed) {
          process.kill();
          return;
        }
        const waiter = this.#waiters.shift();
        if (waiter) waiter.resolve(process);
        else this.#ready.push(process);
        this.refill();
      },
      (error: Error) => {
        this.#starting.delete(process);
        this.#failedStarts += 1;
        this.#failureStreak += 1;
        this.#lastStartError = error.message;
        if (this.#starting.size === 0 && this.#failureStreak >= 3) {
          for (const waiter of this.#waiters.splice(0)) {
            waiter.reject(new SandboxError("RUNTIME_UNAVAILABLE", error.message));
          }
        }
        this.refill();
      },
    );
  }
}

function closing(): SandboxError {
  return new SandboxError("SERVICE_CLOSING", "The runtime is closed.");
}

/** Resident and proportional memory of a process and its descendants (Linux /proc), or null. */
export function processTreeMemory(pid: number): { rssBytes: number; pssBytes: number } | null {
  try {
    let rssBytes = 0;
    let pssBytes = 0;
    const pending = [pid];
    while (pending.length > 0) {
      const current = pending.pop()!;
      const rollup = readFileSync(`/proc/${current}/smaps_rollup`, "utf8");
      rssBytes += kilobytes(rollup, "Rss") * 1_024;
      pssBytes += kilobytes(rollup, "Pss") * 1_024;
      const children = readFileSync(`/proc/${current}/task/${current}/children`, "utf8").trim();
      if (children) pending.push(...children.split(/\s+/).map(Number));
    }
    return { rssBytes, pssBytes };
  } catch {
    return null;
  }
}

function kilobytes(rollup: string, field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(rollup);
  return match ? Number(match[1]) : 0;
}
