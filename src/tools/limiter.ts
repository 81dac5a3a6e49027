/**
 * `CapabilityLimits.concurrency` and `rate_per_min`, enforced per tool across every session.
 *
 * - Concurrency: at most `concurrency` calls of a tool run at once; further calls wait, first
 *   come first served, for a slot, up to the call's own timeout (after which the call is
 *   denied with `CONCURRENCY_LIMIT`).
 * - Rate: at most `rate_per_min` calls are admitted in any 60-second sliding window; a call
 *   past it is denied at once with `RATE_LIMITED` and told when a slot frees.
 *
 * @module
 */
import type { CapabilityLimits } from "../contract/types.ts";

const WINDOW_MS = 60_000;

interface Waiter {
  grant(release: () => void): void;
}

/** The limits state of one tool. */
export class ToolLimiter {
  readonly #concurrency: number;
  readonly #ratePerMin: number | null;
  readonly #admitted: number[] = [];
  readonly #waiters: Waiter[] = [];
  #inFlight = 0;

  constructor(limits: CapabilityLimits) {
    this.#concurrency = limits.concurrency;
    this.#ratePerMin = limits.rate_per_min;
  }

  /** Calls running now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Admits one call in the rate window, or answers how many ms until one can be admitted.
   * `now` is `performance.now()`.
   */
  admit(now: number = performance.now()): { ok: true } | { ok: false; retryAfterMs: number } {
    if (this.#ratePerMin === null) return { ok: true };
    while (this.#admitted.length > 0 && this.#admitted[0]! <= now - WINDOW_MS)
      this.#admitted.shift();
    if (this.#admitted.length >= this.#ratePerMin) {
      return { ok: false, retryAfterMs: Math.ceil(this.#admitted[0]! + WINDOW_MS - now) };
    }
    this.#admitted.push(now);
    return { ok: true };
  }

  /**
   * Takes a concurrency slot, waiting up to `waitMs`; answers the function that gives it back,
   * or null when no slot freed in time or `signal` aborted.
   */
  acquire(waitMs: number, signal: AbortSignal): Promise<(() => void) | null> {
    if (this.#inFlight < this.#concurrency) {
      this.#inFlight += 1;
      return Promise.resolve(this.#releaser());
    }
    if (waitMs <= 0 || signal.aborted) return Promise.resolve(null);
    return new Promise((resolve) => {
      const waiter: Waiter = {
        grant: (release) => {
          cleanup();
          resolve(release);
        },
      };
      const giveUp = () => {
        cleanup();
        resolve(null);
      };
      const timer = setTimeout(giveUp, waitMs);
      signal.addEventListener("abort", giveUp, { once: true });
      const cleanup = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", giveUp);
        const index = this.#waiters.indexOf(waiter);
        if (index >= 0) this.#waiters.splice(index, 1);
      };
      this.#waiters.push(waiter);
    });
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiters.shift();
      // The slot passes straight to the next waiter, so the count does not change.
      if (next) next.grant(this.#releaser());
      else this.#inFlight -= 1;
    };
  }
}
