/**
 * Messages between the server and an engine worker (a worker thread or a child process),
 * as discriminated unions. One protocol for every backend that runs its engine out of the
 * server's thread: the worker serves a {@link LanguageRuntime} (see ./engine-host.ts), the
 * server drives a pool of workers (see ./worker-pool.ts).
 *
 * Values are structured-clone safe (plain objects, strings, numbers, Uint8Array).
 *
 * @module
 */
import type { JsonObject, Language, SessionId, SessionLimits } from "../contract/types.ts";
import type { RunDeterminism, RuntimeRunOutcome, ToolCallReply } from "./interface.ts";

/** A run as it crosses to the worker: the runtime request minus what cannot be cloned. */
export interface WireRunRequest {
  runId: string;
  sessionId: SessionId;
  language: Language;
  code: string;
  inputs: JsonObject;
  limits: SessionLimits;
  validateOnly: boolean;
  toolNames: readonly string[];
  toolsVersion: number;
  /** Index of the run's flag in the worker's shared cancel buffer, when it has one. */
  cancelSlot: number | null;
  determinism: RunDeterminism | null;
  /** Send "output" messages as the guest prints (the server streams them). */
  streamOutput: boolean;
}

/** Server → worker. Requests carry an id the worker answers with a {@link EngineResponse}. */
export type HostMessage =
  | {
      kind: "create";
      requestId: number;
      sessionId: SessionId;
      limits: SessionLimits;
      language: Language;
    }
  | { kind: "run"; requestId: number; run: WireRunRequest }
  | { kind: "destroy"; requestId: number; sessionId: SessionId }
  | { kind: "list"; requestId: number }
  | { kind: "snapshot"; requestId: number; sessionId: SessionId }
  | { kind: "restore"; requestId: number; snapshot: Uint8Array; sessionId: SessionId | null }
  | { kind: "tool-reply"; callId: number; reply: ToolCallReply }
  | { kind: "cancel"; runId: string }
  | { kind: "pause"; runId: string; paused: boolean };

/** The answer to one request. Errors carry a code from docs/errors.md. */
export type EngineResponse =
  | { kind: "response"; requestId: number; ok: true; value: unknown }
  | { kind: "response"; requestId: number; ok: false; error: { code: string; message: string } };

/** Worker → server. */
export type EngineMessage =
  | { kind: "ready" }
  | EngineResponse
  | {
      kind: "tool-call";
      callId: number;
      runId: string;
      name: string;
      argsJson: string;
      kwargsJson: string;
    }
  | { kind: "output"; runId: string; stream: "stdout" | "stderr"; text: string };

/** What a worker answers to "run". */
export type WireRunOutcome = RuntimeRunOutcome;

/** Data a worker receives at start (worker threads: `workerData`). */
export interface EngineWorkerData {
  /** Shared flags, one Int32 per run slot; a non-zero slot asks its run to stop. */
  cancelBuffer: SharedArrayBuffer | null;
  /** Backend-specific options (e.g. which engine build to load). */
  options: unknown;
}

/** Cancel slots per worker (runs of one worker in flight at once). */
export const CANCEL_SLOTS = 4_096;
