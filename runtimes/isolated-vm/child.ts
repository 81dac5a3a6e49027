/**
 * Entry of an isolated-vm child process: serves {@link IsolatedVmEngine} sessions to the
 * server over the engine protocol (IPC). Started by ./index.ts with `--no-node-snapshot` (which
 * isolated-vm needs on Node 20+) and a scrubbed environment; never imported.
 *
 * The process ends itself with SIGKILL when the engine says it must (isolated-vm's
 * `onCatastrophicError`, a thread stuck in a disposed isolate) once the messages it has posted
 * have left, and when the server's end of the channel closes (so no orphan keeps computing).
 * SIGKILL because a process whose isolate thread is wedged may not finish a normal exit.
 *
 * @module
 */
import {
  childEngineOptions,
  type EngineMessage,
  type EnginePort,
  type HostMessage,
  serveEngine,
} from "../../src/index.ts";
import { IsolatedVmEngine } from "./engine.ts";
import type { IsolatedVmChildOptions } from "./index.ts";

/** Longest wait for posted messages to leave before the process ends itself, in ms. */
const FLUSH_WAIT_MS = 1_000;

const options = childEngineOptions<IsolatedVmChildOptions>();

let unsent = 0;
let whenFlushed: (() => void)[] = [];
const port: EnginePort = {
  postMessage(message: EngineMessage) {
    if (!process.connected) return;
    unsent += 1;
    process.send?.(message, undefined, {}, () => {
      unsent -= 1;
      if (unsent === 0) {
        const waiting = whenFlushed;
        whenFlushed = [];
        for (const resolve of waiting) resolve();
      }
    });
  },
  onMessage(listener) {
    process.on("message", (message) => listener(message as HostMessage));
  },
};

function endProcess(): never {
  process.kill(process.pid, "SIGKILL");
  throw new Error("unreachable: the process was killed");
}

const engine = new IsolatedVmEngine({
  info: options.info,
  disposeGraceMs: options.disposeGraceMs,
  stuckThreadLimitMs: options.stuckThreadLimitMs,
  onFatal: () => {
    const flushed =
      unsent === 0 ? Promise.resolve() : new Promise<void>((resolve) => whenFlushed.push(resolve));
    void Promise.race([flushed, new Promise((resolve) => setTimeout(resolve, FLUSH_WAIT_MS))]).then(
      endProcess,
    );
  },
});

process.on("disconnect", endProcess);
serveEngine(engine, port, null);
