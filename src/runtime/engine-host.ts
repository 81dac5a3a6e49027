/**
 * The worker side of the engine protocol: serves a {@link LanguageRuntime} that runs in a
 * worker thread or child process to the server that spawned it.
 *
 * Tool calls cross back to the server as "tool-call" messages; cancellation arrives both as
 * a "cancel" message (aborting the run's signal) and, for worker threads, as a flag in shared
 * memory the engine polls while guest code holds the thread.
 *
 * @module
 */
import { SandboxError } from "../errors.ts";
import type { EngineMessage, HostMessage, WireRunRequest } from "./engine-protocol.ts";
import type { LanguageRuntime, ToolBridge, ToolCallReply } from "./interface.ts";

/** A message channel to the server (a worker thread's `parentPort`, a child's `process`). */
export interface EnginePort {
  postMessage(message: EngineMessage): void;
  onMessage(listener: (message: HostMessage) => void): void;
}

/**
 * Answers the server's requests with `runtime` until the port closes. Sends "ready" first.
 * @param cancelBuffer the shared cancel flags (worker threads), or null.
 */
export function serveEngine(
  runtime: LanguageRuntime,
  port: EnginePort,
  cancelBuffer: SharedArrayBuffer | null,
): void {
  const flags = cancelBuffer ? new Int32Array(cancelBuffer) : null;
  const pendingCalls = new Map<number, (reply: ToolCallReply) => void>();
  const runs = new Map<string, AbortController>();
  let nextCallId = 0;

  const respond = async (requestId: number, work: () => Promise<unknown>) => {
    try {
      const value = await work();
      port.postMessage({ kind: "response", requestId, ok: true, value });
    } catch (error) {
      const code = error instanceof SandboxError ? error.code : "INTERNAL_ERROR";
      const message = error instanceof Error ? error.message : String(error);
      port.postMessage({ kind: "response", requestId, ok: false, error: { code, message } });
    }
  };

  const bridgeFor = (run: WireRunRequest): ToolBridge => ({
    names: run.toolNames,
    version: run.toolsVersion,
    call(name, argsJson, kwargsJson) {
      const callId = ++nextCallId;
      return new Promise<ToolCallReply>((resolve) => {
        pendingCalls.set(callId, resolve);
        port.postMessage({
          kind: "tool-call",
          callId,
          runId: run.runId,
          name,
          argsJson,
          kwargsJson,
        });
      });
    },
  });

  const execute = async (run: WireRunRequest) => {
    const controller = new AbortController();
    runs.set(run.runId, controller);
    const slot = run.cancelSlot;
    try {
      return await runtime.run({
        runId: run.runId,
        sessionId: run.sessionId,
        language: run.language,
        code: run.code,
        inputs: run.inputs,
        limits: run.limits,
        validateOnly: run.validateOnly,
        tools: bridgeFor(run),
        signal: controller.signal,
        ...(run.determinism ? { determinism: run.determinism } : {}),
        ...(run.streamOutput
          ? {
              onOutput: (stream: "stdout" | "stderr", text: string) =>
                port.postMessage({ kind: "output", runId: run.runId, stream, text }),
            }
          : {}),
        ...(flags && slot !== null
          ? { cancelRequested: () => Atomics.load(flags, slot) !== 0 }
          : {}),
      });
    } finally {
      runs.delete(run.runId);
    }
  };

  port.onMessage((message) => {
    switch (message.kind) {
      case "create":
        void respond(message.requestId, () =>
          runtime.createSession(message.sessionId, message.limits, message.language),
        );
        return;
      case "run":
        void respond(message.requestId, () => execute(message.run));
        return;
      case "destroy":
        void respond(message.requestId, () => runtime.destroySession(message.sessionId));
        return;
      case "list":
        void respond(message.requestId, () => runtime.listSessions());
        return;
      case "snapshot":
        void respond(message.requestId, () => runtime.snapshotSession(message.sessionId));
        return;
      case "restore":
        void respond(message.requestId, () =>
          runtime.restoreSession(message.snapshot, message.sessionId ?? undefined),
        );
        return;
      case "tool-reply": {
        const resolve = pendingCalls.get(message.callId);
        pendingCalls.delete(message.callId);
        resolve?.(message.reply);
        return;
      }
      case "cancel":
        runs.get(message.runId)?.abort();
        return;
      case "pause":
        runtime.pauseClock?.(message.runId, message.paused);
        return;
      default:
        return;
    }
  });
  port.postMessage({ kind: "ready" });
}

/** The {@link EnginePort} of a child process started by `spawnChildProcess`. */
export function processPort(): EnginePort {
  if (!process.send) throw new Error("processPort() needs an IPC channel to the parent");
  return {
    postMessage: (message) => {
      process.send?.(message);
    },
    onMessage: (listener) => {
      process.on("message", (message) => listener(message as HostMessage));
    },
  };
}

/** Backend options a child process received from `spawnChildProcess` (its last argument). */
export function childEngineOptions<T>(): T {
  return JSON.parse(process.argv.at(-1) ?? "null") as T;
}
