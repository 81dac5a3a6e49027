/**
 * A process registry for the server (seed 003's `ProcessRegistrySink`, and the list, get, stop
 * and watch operations around it): every runner command is a {@link ProcessDescriptor} moving
 * starting → running → (stopping →) exited | failed | stopped, with its output kept in a bounded
 * ring that readers can resume from a cursor.
 *
 * Output cursors (./output-ring.ts): each chunk's cursor is the number of output bytes the
 * process had produced up to its end, so a reader that saw cursor `c` and asks for what follows
 * gets exactly the chunks it has not seen, the first one's `droppedBytes` counting whatever was
 * lost in between (by the producer, by a cut, or by the ring). Cursor 0 is "from the start".
 *
 * Memory: at most `maxOutputBytes` of chunk text per process (64 KiB by default; a larger
 * chunk keeps its end), two tails of `tailBytes` (4 KiB), and at most `maxProcesses` (128)
 * processes: when a registration or an ending passes that number, the processes that finished
 * longest ago are forgotten. Running ones are never dropped; their number is bounded by whoever
 * starts them (one command at a time per runner session).
 *
 * Everything happens synchronously on the caller's turn except `stop`, which waits for the
 * process's {@link ProcessStopper}.
 *
 * @module
 */
import { SandboxError } from "../errors.ts";
import { copyOutput, lastUtf8Bytes, OutputRing, type ProcessOutputChunk } from "./output-ring.ts";
import {
  canonicalDescriptor,
  isFinishedState,
  type ProcessDescriptor,
  type ProcessId,
  type ProcessOutput,
  type ProcessRegistrySink,
  type ProcessState,
  type ProcessStopper,
  type ProcessStopResult,
  TASK_OUTPUT_STREAMS,
  type TaskOutputStream,
} from "./process.ts";
import {
  type ProcessEvent,
  type ProcessEventListener,
  type ProcessSubscription,
  Watchers,
} from "./process-events.ts";
import { formatRfc3339, normalizeRfc3339, rfc3339ToEpochMs } from "./rfc3339.ts";

export type { ProcessOutputChunk } from "./output-ring.ts";
export type { ProcessEvent, ProcessEventListener, ProcessSubscription } from "./process-events.ts";

/** Settings of a {@link ProcessRegistry}. */
export interface ProcessRegistryOptions {
  /** Processes kept, running ones included (default 128); the oldest finished go first. */
  maxProcesses?: number;
  /** Bytes of output text kept per process, all streams together (default 65,536). */
  maxOutputBytes?: number;
  /** Bytes kept in `stdoutTail` and in `stderrTail` (default 4,096). */
  tailBytes?: number;
  /** The clock, Unix epoch milliseconds (default `Date.now`). */
  now?: () => number;
  /** Told when a listener throws; the listener is unsubscribed either way. Default: nothing. */
  onListenerError?: (error: unknown) => void;
}

/** Filter of {@link ProcessRegistry.list}. */
export interface ProcessListFilter {
  /** Only the processes of this runner session. */
  runnerSessionId?: string;
  /** Include exited, failed and stopped processes (default true). */
  includeFinished?: boolean;
}

interface ProcessRecord {
  descriptor: ProcessDescriptor;
  order: number;
  finishedAtMs: number | null;
  stopper: ProcessStopper | null;
  output: OutputRing;
  /** The stopping or final event, replayed to watchers that come later. */
  lastEvent: ProcessEvent | null;
  watchers: Watchers;
  stopping: Promise<ProcessStopResult> | null;
}

const I32_MIN = -2_147_483_648;
const I32_MAX = 2_147_483_647;

function positiveInteger(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`ProcessRegistry: ${name} must be a positive integer, not ${value}.`);
  }
  return value;
}

function badRequest(message: string): SandboxError {
  return new SandboxError("INVALID_REQUEST", message);
}

/** A process registry holding descriptors, output rings and watchers in memory. */
export class ProcessRegistry implements ProcessRegistrySink {
  readonly #records = new Map<ProcessId, ProcessRecord>();
  readonly #everyone: Watchers;
  readonly #maxProcesses: number;
  readonly #maxOutputBytes: number;
  readonly #tailBytes: number;
  readonly #now: () => number;
  readonly #onListenerError: (error: unknown) => void;
  #order = 0;

  /** @throws RangeError when an option is not a positive integer. */
  constructor(options: ProcessRegistryOptions = {}) {
    this.#maxProcesses = positiveInteger(options.maxProcesses, 128, "maxProcesses");
    this.#maxOutputBytes = positiveInteger(options.maxOutputBytes, 65_536, "maxOutputBytes");
    this.#tailBytes = positiveInteger(options.tailBytes, 4_096, "tailBytes");
    this.#now = options.now ?? Date.now;
    this.#onListenerError = options.onListenerError ?? (() => {});
    this.#everyone = new Watchers(this.#onListenerError);
  }

  /**
   * Registers a process in state `starting` or `running` and moves it to `running`; watchers of
   * every process get `started`. `updatedAt` becomes now, a `startedAt` in the future becomes
   * now, and the process is stoppable only if it says so and a stopper is given. A finished
   * process with the same id is replaced.
   * @returns the descriptor as registered.
   * @throws SandboxError `PROCESS_EXISTS` when a process with this id has not finished;
   *   `INVALID_REQUEST` for an empty id, another state, or a `startedAt` that is not RFC 3339.
   */
  register(process: ProcessDescriptor, stopper: ProcessStopper | null = null): ProcessDescriptor {
    if (typeof process.processId !== "string" || process.processId === "") {
      throw badRequest("A process needs a non-empty processId.");
    }
    if (process.state !== "starting" && process.state !== "running") {
      throw badRequest(
        `Process ${process.processId} is registered in state starting or running, not ${JSON.stringify(process.state)}.`,
      );
    }
    const startedMs = rfc3339ToEpochMs(process.startedAt);
    if (startedMs === null) {
      throw badRequest(`Process ${process.processId}: startedAt is not an RFC 3339 date-time.`);
    }
    const existing = this.#records.get(process.processId);
    if (existing && existing.finishedAtMs === null) {
      throw new SandboxError("PROCESS_EXISTS", `Process ${process.processId} is still running.`);
    }
    if (existing) this.#forget(existing);
    const nowMs = this.#now();
    const now = formatRfc3339(nowMs);
    const record: ProcessRecord = {
      descriptor: canonicalDescriptor({
        ...process,
        state: "running",
        stoppable: process.stoppable && stopper !== null,
        startedAt: startedMs > nowMs ? now : (normalizeRfc3339(process.startedAt) as string),
        updatedAt: now,
      }),
      order: this.#order++,
      finishedAtMs: null,
      stopper,
      output: new OutputRing(this.#maxOutputBytes),
      lastEvent: null,
      watchers: new Watchers(this.#onListenerError),
      stopping: null,
    };
    this.#records.set(process.processId, record);
    this.#emit(record, {
      type: "started",
      processId: process.processId,
      data: { process: canonicalDescriptor(record.descriptor), timestamp: now },
    });
    this.#prune();
    return canonicalDescriptor(record.descriptor);
  }

  /**
   * Adds a chunk of output: kept in the ring (cut to its last `maxOutputBytes` bytes if larger,
   * the cut counted in `droppedBytes`), appended to the stream's tail, sent to watchers. An
   * empty chunk with nothing dropped is ignored. Output after the process finished is still
   * taken (a producer may flush late).
   * @returns the stored chunk with its cursor, or `null` when ignored.
   * @throws SandboxError `PROCESS_NOT_FOUND`; `INVALID_REQUEST` for a bad stream, droppedBytes
   *   or timestamp.
   */
  appendOutput(output: ProcessOutput): ProcessOutputChunk | null {
    const record = this.#require(output.processId);
    if (!TASK_OUTPUT_STREAMS.includes(output.stream)) {
      throw badRequest(`Output stream must be one of ${TASK_OUTPUT_STREAMS.join(", ")}.`);
    }
    if (!Number.isSafeInteger(output.droppedBytes) || output.droppedBytes < 0) {
      throw badRequest("Output droppedBytes must be a non-negative integer.");
    }
    const timestamp = normalizeRfc3339(output.timestamp);
    if (timestamp === null) throw badRequest("Output timestamp is not an RFC 3339 date-time.");
    const stored = record.output.append({ ...output, timestamp });
    if (!stored) return null;
    this.#updateTail(record, output.stream, stored.output.chunk);
    record.descriptor.updatedAt = formatRfc3339(this.#now());
    this.#emit(record, {
      type: "output",
      processId: output.processId,
      cursor: stored.cursor,
      data: copyOutput(stored.output),
    });
    return stored;
  }

  /**
   * {@link appendOutput} of text stamped now, with the process's thread and turn ids.
   * @throws as {@link appendOutput}.
   */
  appendText(
    processId: ProcessId,
    stream: TaskOutputStream,
    chunk: string,
    droppedBytes = 0,
  ): ProcessOutputChunk | null {
    const descriptor = this.#require(processId).descriptor;
    const output: ProcessOutput = { processId, stream, chunk, droppedBytes, timestamp: "" };
    if (descriptor.threadId !== undefined) output.threadId = descriptor.threadId;
    if (descriptor.turnId !== undefined) output.turnId = descriptor.turnId;
    output.timestamp = formatRfc3339(this.#now());
    return this.appendOutput(output);
  }

  /**
   * The process exited by itself: state `{exited: {exitCode}}` (`exitCode` an i32, or `null`
   * when there is none). Nothing changes if it already finished (the first ending reported wins).
   * @returns the descriptor now.
   * @throws SandboxError `PROCESS_NOT_FOUND`; `INVALID_REQUEST` for an exit code outside i32.
   */
  markExited(processId: ProcessId, exitCode: number | null): ProcessDescriptor {
    if (
      exitCode !== null &&
      (!Number.isInteger(exitCode) || exitCode < I32_MIN || exitCode > I32_MAX)
    ) {
      throw badRequest(`Exit code ${exitCode} is not a 32-bit integer.`);
    }
    return this.#finish(processId, { exited: { exitCode } }, (process, timestamp) => ({
      type: "exited",
      processId,
      data: exitCode === null ? { process, timestamp } : { process, exitCode, timestamp },
    }));
  }

  /**
   * The process failed (could not start, or its runner broke): state `{failed: {error}}`.
   * Nothing changes if it already finished.
   * @throws SandboxError `PROCESS_NOT_FOUND`.
   */
  markFailed(processId: ProcessId, error: string): ProcessDescriptor {
    return this.#finish(processId, { failed: { error } }, (process, timestamp) => ({
      type: "failed",
      processId,
      data: { process, error, timestamp },
    }));
  }

  /**
   * The process was stopped: state `stopped`. Nothing changes if it already finished.
   * @throws SandboxError `PROCESS_NOT_FOUND`.
   */
  markStopped(processId: ProcessId, reason: string | null = null): ProcessDescriptor {
    return this.#finish(processId, "stopped", stoppedEvent(reason));
  }

  /**
   * Stops a process through its stopper: state `stopping` (watchers get `stopping`), then, once
   * the stopper resolves, `stopped` with the reason, unless the owner reported another ending in
   * the meantime. A process that has finished, is not stoppable or has no stopper is left alone
   * (`stopped: false`). A second stop while one is under way gets the same answer.
   * @returns `{processId, stopped, process}` with the descriptor after the stop.
   * @throws SandboxError `PROCESS_NOT_FOUND`; rejects with the stopper's error when it fails, the
   *   process back in `running`.
   */
  stop(processId: ProcessId, reason: string | null = null): Promise<ProcessStopResult> {
    let record: ProcessRecord;
    try {
      record = this.#require(processId);
    } catch (error) {
      return Promise.reject(error);
    }
    if (record.stopping) return record.stopping;
    const stopper = record.stopper;
    if (isFinishedState(record.descriptor.state) || !record.descriptor.stoppable || !stopper) {
      return Promise.resolve({
        processId,
        stopped: false,
        process: canonicalDescriptor(record.descriptor),
      });
    }
    const now = formatRfc3339(this.#now());
    record.descriptor.state = "stopping";
    record.descriptor.updatedAt = now;
    const event: ProcessEvent = {
      type: "stopping",
      processId,
      data: reason === null ? { processId, timestamp: now } : { processId, reason, timestamp: now },
    };
    record.lastEvent = event;
    this.#emit(record, event);
    const stopping = (async (): Promise<ProcessStopResult> => {
      try {
        await stopper.stop(reason);
      } catch (error) {
        if (record.descriptor.state === "stopping") {
          record.descriptor.state = "running";
          record.descriptor.updatedAt = formatRfc3339(this.#now());
          record.lastEvent = null;
        }
        throw error;
      } finally {
        record.stopping = null;
      }
      if (record.descriptor.state === "stopping") {
        this.#finishRecord(record, "stopped", stoppedEvent(reason));
      }
      return { processId, stopped: true, process: canonicalDescriptor(record.descriptor) };
    })();
    record.stopping = stopping;
    return stopping;
  }

  /** Stops every stoppable running process; a failed stop answers `stopped: false` and no process. */
  async stopAll(reason: string | null = null): Promise<ProcessStopResult[]> {
    const running = [...this.#records.values()].filter(
      (record) => record.descriptor.stoppable && !isFinishedState(record.descriptor.state),
    );
    return Promise.all(
      running.map((record) =>
        this.stop(record.descriptor.processId, reason).catch(
          (): ProcessStopResult => ({ processId: record.descriptor.processId, stopped: false }),
        ),
      ),
    );
  }

  /** The processes kept, in the order they were registered. */
  list(filter: ProcessListFilter = {}): ProcessDescriptor[] {
    const out: ProcessDescriptor[] = [];
    for (const record of this.#records.values()) {
      const descriptor = record.descriptor;
      if (
        filter.runnerSessionId !== undefined &&
        descriptor.runnerSessionId !== filter.runnerSessionId
      ) {
        continue;
      }
      if (filter.includeFinished === false && record.finishedAtMs !== null) continue;
      out.push(canonicalDescriptor(descriptor));
    }
    return out;
  }

  /** A copy of a process's descriptor, or `undefined` when no process has this id. */
  get(processId: ProcessId): ProcessDescriptor | undefined {
    const record = this.#records.get(processId);
    return record ? canonicalDescriptor(record.descriptor) : undefined;
  }

  /**
   * A copy of a process's descriptor.
   * @throws SandboxError `PROCESS_NOT_FOUND`.
   */
  require(processId: ProcessId): ProcessDescriptor {
    return canonicalDescriptor(this.#require(processId).descriptor);
  }

  /**
   * The kept output chunks after `afterCursor` (0: from the start), oldest first; the first
   * one's `droppedBytes` counts everything lost between the cursor and it.
   * @throws SandboxError `PROCESS_NOT_FOUND`; `INVALID_REQUEST` for a cursor this process's
   *   output never gave (negative, past its end, or inside a chunk).
   */
  readOutput(processId: ProcessId, afterCursor = 0): ProcessOutputChunk[] {
    return this.#require(processId).output.after(afterCursor);
  }

  /**
   * Watches one process: the listener is first given, synchronously and in order, the kept
   * output chunks after `afterCursor` (as {@link readOutput}; `null` skips them and starts at
   * the current end), then the `stopping` or final event if the process is stopping or has
   * finished, then every new event of the process as it happens.
   * @throws SandboxError `PROCESS_NOT_FOUND`; `INVALID_REQUEST` for a bad cursor.
   */
  subscribe(
    processId: ProcessId,
    afterCursor: number | null,
    listener: ProcessEventListener,
  ): ProcessSubscription {
    const record = this.#require(processId);
    const backlog = afterCursor === null ? [] : record.output.after(afterCursor);
    const watcher = record.watchers.add(listener, true);
    for (const chunk of backlog) {
      record.watchers.deliver(watcher, {
        type: "output",
        processId,
        cursor: chunk.cursor,
        data: chunk.output,
      });
    }
    if (record.lastEvent) record.watchers.deliver(watcher, record.lastEvent);
    record.watchers.release(watcher);
    return {
      process: canonicalDescriptor(record.descriptor),
      cursor: backlog.at(-1)?.cursor ?? afterCursor ?? record.output.endCursor,
      unsubscribe: () => record.watchers.remove(watcher),
    };
  }

  /** Watches every process: each new event of any process, no backlog. Returns the unsubscribe. */
  subscribeAll(listener: ProcessEventListener): () => void {
    const watcher = this.#everyone.add(listener);
    return () => this.#everyone.remove(watcher);
  }

  // Seed 003's ProcessRegistrySink, over the synchronous methods above.

  /** Seed: `register_process`. See {@link register}. */
  async registerProcess(
    process: ProcessDescriptor,
    stopper: ProcessStopper | null,
  ): Promise<ProcessDescriptor> {
    return this.register(process, stopper);
  }

  /** Seed: `append_process_output`. See {@link appendOutput}. */
  async appendProcessOutput(output: ProcessOutput): Promise<void> {
    this.appendOutput(output);
  }

  /** Seed: `mark_process_exited`. See {@link markExited}. */
  async markProcessExited(processId: ProcessId, exitCode: number | null): Promise<void> {
    this.markExited(processId, exitCode);
  }

  /** Seed: `mark_process_failed`. See {@link markFailed}. */
  async markProcessFailed(processId: ProcessId, error: string): Promise<void> {
    this.markFailed(processId, error);
  }

  /** Seed: `mark_process_stopped`. See {@link markStopped}. */
  async markProcessStopped(processId: ProcessId, reason: string | null): Promise<void> {
    this.markStopped(processId, reason);
  }

  #require(processId: ProcessId): ProcessRecord {
    const record = this.#records.get(processId);
    if (!record)
      throw new SandboxError("PROCESS_NOT_FOUND", `No process ${JSON.stringify(processId)}.`);
    return record;
  }

  #finish(
    processId: ProcessId,
    state: ProcessState,
    eventOf: (process: ProcessDescriptor, timestamp: string) => ProcessEvent,
  ): ProcessDescriptor {
    const record = this.#require(processId);
    if (record.finishedAtMs === null) this.#finishRecord(record, state, eventOf);
    return canonicalDescriptor(record.descriptor);
  }

  #finishRecord(
    record: ProcessRecord,
    state: ProcessState,
    eventOf: (process: ProcessDescriptor, timestamp: string) => ProcessEvent,
  ): void {
    const nowMs = this.#now();
    const now = formatRfc3339(nowMs);
    record.descriptor.state = state;
    record.descriptor.stoppable = false;
    record.descriptor.updatedAt = now;
    record.stopper = null;
    record.finishedAtMs = nowMs;
    const event = eventOf(canonicalDescriptor(record.descriptor), now);
    record.lastEvent = event;
    this.#emit(record, event);
    this.#prune();
  }

  #updateTail(record: ProcessRecord, stream: TaskOutputStream, chunk: string): void {
    if (stream === "log") return;
    const key = stream === "stdout" ? "stdoutTail" : "stderrTail";
    const recent = lastUtf8Bytes(chunk, this.#tailBytes);
    record.descriptor[key] = lastUtf8Bytes(
      (record.descriptor[key] ?? "") + recent,
      this.#tailBytes,
    );
  }

  #emit(record: ProcessRecord, event: ProcessEvent): void {
    record.watchers.emit(event);
    this.#everyone.emit(event);
  }

  #forget(record: ProcessRecord): void {
    // Its watchers go with it: nothing emits to them any more.
    this.#records.delete(record.descriptor.processId);
  }

  #prune(): void {
    while (this.#records.size > this.#maxProcesses) {
      let oldest: ProcessRecord | undefined;
      for (const record of this.#records.values()) {
        if (record.finishedAtMs === null) continue;
        if (
          !oldest ||
          record.finishedAtMs < oldest.finishedAtMs! ||
          (record.finishedAtMs === oldest.finishedAtMs && record.order < oldest.order)
        ) {
          oldest = record;
        }
      }
      if (!oldest) return;
      this.#forget(oldest);
    }
  }
}

/** The `stopped` event, with the reason when there is one. */
function stoppedEvent(reason: string | null) {
  return (process: ProcessDescriptor, timestamp: string): ProcessEvent => ({
    type: "stopped",
    processId: process.processId,
    data: reason === null ? { process, timestamp } : { process, reason, timestamp },
  });
}
