/**
 * The journal: what a session's state was built from, so it can be rebuilt anywhere by
 * replaying it — on another host, another build of the engine, or another backend of the
 * same language — without repeating a side effect.
 *
 * Each executed run is recorded with its code, inputs and limits, the seed of its
 * `Math.random`, every clock value guest code read, and every tool call's reply as the guest
 * received it. Replay pins the seed and the clock to those values and answers each tool call
 * from the journal by its request digest ({@link ReplayBridge}); the real tool is never called.
 * A call the journal lacks, or a run ending another way, is a divergence
 * (`SNAPSHOT_DIVERGED`): the restore is abandoned and nothing is restored.
 *
 * @module
 */
import type { JsonObject, Language, RunStatus, SessionLimits } from "../contract/types.ts";
import { digestBytes, digestJsonText } from "../digest.ts";
import type { ToolBridge, ToolCallReply } from "../runtime/interface.ts";

/** One tool call of a journaled run and the reply the guest got (null: it never got one). */
export interface JournalCall {
  name: string;
  request_digest: string;
  reply: ToolCallReply | null;
}

/** One executed run. */
export interface JournalRun {
  code: string;
  language: Language;
  inputs: JsonObject;
  limits: SessionLimits;
  /** Seed of the run's `Math.random` (four unsigned 32-bit integers). */
  seed: [number, number, number, number];
  /** Clock values (`Date.now()`, `new Date()`) guest code read, in order. */
  clock: number[];
  calls: JournalCall[];
  status: RunStatus;
  /** `digest_json` of the run's result, or null when it had none. */
  result_digest: string | null;
}

/** A session's journal. */
export interface Journal {
  runs: JournalRun[];
}

/** The request digest the gateway takes (see ../tools/gateway.ts), for matching replays. */
export function requestDigestOf(name: string, argsJson: string, kwargsJson: string): string {
  const text = `{"name":${JSON.stringify(String(name))},"args":${argsJson},"kwargs":${kwargsJson}}`;
  try {
    return digestJsonText(text);
  } catch {
    return digestBytes(text);
  }
}

/**
 * Answers a replayed run's tool calls from its journal entry, by request digest. The tool
 * names the guest sees include every name the journal called, registered here or not.
 */
export class ReplayBridge implements ToolBridge {
  readonly names: readonly string[];
  readonly version: number;
  readonly #remaining = new Map<string, (ToolCallReply | null)[]>();
  #divergence: string | null = null;

  constructor(run: JournalRun, registeredNames: readonly string[], version: number) {
    this.names = [...new Set([...registeredNames, ...run.calls.map((call) => call.name)])].sort();
    this.version = version;
    for (const call of run.calls) {
      const queue = this.#remaining.get(call.request_digest) ?? [];
      queue.push(call.reply);
      this.#remaining.set(call.request_digest, queue);
    }
  }

  /** Why the replay went another way, or null. */
  get divergence(): string | null {
    if (this.#divergence) return this.#divergence;
    const unanswered = [...this.#remaining.values()].reduce((sum, queue) => sum + queue.length, 0);
    return unanswered > 0 ? `${unanswered} recorded tool call(s) were not made again` : null;
  }

  call(name: string, argsJson: string, kwargsJson: string): Promise<ToolCallReply> {
    const digest = requestDigestOf(name, argsJson, kwargsJson);
    const queue = this.#remaining.get(digest);
    const reply = queue?.shift();
    if (queue && queue.length === 0) this.#remaining.delete(digest);
    if (reply === undefined) {
      this.#divergence ??= `a call to '${name}' (request ${digest.slice(0, 16)}…) is not in the journal`;
      return Promise.resolve({
        ok: false,
        status: "denied",
        code: "SNAPSHOT_DIVERGED",
        message: "This call is not in the journal being replayed.",
        fatal: true,
      });
    }
    // A call the original run never got an answer to stays unanswered.
    if (reply === null) return new Promise(() => {});
    return Promise.resolve(reply);
  }
}
