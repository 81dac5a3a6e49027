/**
 * The events a `ProcessRegistry` (./process-registry.ts) tells its watchers, and
 * the fan-out that delivers them in order.
 *
 * @module
 */
import type {
  ProcessDescriptor,
  ProcessExited,
  ProcessFailed,
  ProcessId,
  ProcessOutput,
  ProcessStarted,
  ProcessStopped,
  ProcessStopping,
} from "./process.ts";

/**
 * What a watcher of a process is told, in order. `data` has the seed 003 event's shape
 * (camelCase JSON); `cursor` is the output chunk's cursor. Treat events as read-only: every
 * listener gets the same object.
 */
export type ProcessEvent =
  | { type: "started"; processId: ProcessId; data: ProcessStarted }
  | { type: "output"; processId: ProcessId; cursor: number; data: ProcessOutput }
  | { type: "stopping"; processId: ProcessId; data: ProcessStopping }
  | { type: "exited"; processId: ProcessId; data: ProcessExited }
  | { type: "stopped"; processId: ProcessId; data: ProcessStopped }
  | { type: "failed"; processId: ProcessId; data: ProcessFailed };

/** Receives {@link ProcessEvent}s. Throwing unsubscribes it. */
export type ProcessEventListener = (event: ProcessEvent) => void;

/** A watch on one process, from `ProcessRegistry.subscribe`. */
export interface ProcessSubscription {
  /** The process as it was when the watch began. */
  readonly process: ProcessDescriptor;
  /**
   * The output cursor the watch stands at after its backlog: resuming from it later misses
   * nothing and repeats nothing of what this watch was given so far.
   */
  readonly cursor: number;
  /** Stops the events; calling it again does nothing. */
  unsubscribe(): void;
}

/** One listener in a {@link Watchers} set. */
export interface Watcher {
  readonly listener: ProcessEventListener;
  /** Events held back while the watcher's backlog is being delivered; `null` when live. */
  pending: ProcessEvent[] | null;
  active: boolean;
}

/**
 * A set of listeners given each event in order. A listener that throws is removed and the
 * error handed to `onError`, so a broken watcher never fails the producer that emitted.
 */
export class Watchers {
  readonly #watchers = new Set<Watcher>();
  readonly #onError: (error: unknown) => void;

  constructor(onError: (error: unknown) => void) {
    this.#onError = onError;
  }

  /**
   * Adds a listener. With `holdBack`, events emitted until {@link release} wait in order, so a
   * backlog can be delivered first with {@link deliver}.
   */
  add(listener: ProcessEventListener, holdBack = false): Watcher {
    const watcher: Watcher = { listener, pending: holdBack ? [] : null, active: true };
    this.#watchers.add(watcher);
    return watcher;
  }

  /** Gives every listener the event (or holds it back for those not released yet). */
  emit(event: ProcessEvent): void {
    for (const watcher of [...this.#watchers]) {
      if (watcher.pending) watcher.pending.push(event);
      else this.deliver(watcher, event);
    }
  }

  /** Gives one listener one event now. */
  deliver(watcher: Watcher, event: ProcessEvent): void {
    if (!watcher.active) return;
    try {
      watcher.listener(event);
    } catch (error) {
      this.remove(watcher);
      this.#onError(error);
    }
  }

  /** Delivers what was held back, in order (and whatever that causes), then goes live. */
  release(watcher: Watcher): void {
    while (watcher.active && watcher.pending && watcher.pending.length > 0) {
      this.deliver(watcher, watcher.pending.shift()!);
    }
    watcher.pending = null;
  }

  /** Removes a listener; it gets nothing more. */
  remove(watcher: Watcher): void {
    watcher.active = false;
    watcher.pending = null;
    this.#watchers.delete(watcher);
  }
}
