/**
 * Taking and restoring snapshots, between the session manager and the backends: what goes
 * into a snapshot ({@link captureSnapshot}), which backend can restore one and how
 * ({@link planRestore}), and replaying a journal into a fresh session ({@link replayJournal}).
 *
 * The manager owns sessions, queues and the store; this module owns the format's rules.
 *
 * @module
 */
import { randomUUID } from "node:crypto";
import {
  type SessionId,
  type SessionMeta,
  type SideEffect,
  SNAPSHOT_VERSION,
} from "../contract/types.ts";
import { digestJson } from "../digest.ts";
import { isSandboxError, SandboxError } from "../errors.ts";
import type { LanguageRuntime, RuntimeInfo, RuntimeRunOutcome } from "../runtime/interface.ts";
import type { RuntimeRegistry } from "../runtime/registry.ts";
import type { Workspace } from "../workspace.ts";
import {
  type OpenedSnapshot,
  openSnapshot,
  peekSnapshotHeader,
  type SnapshotHeader,
  type SnapshotKeyring,
  type SnapshotStateKind,
  sealSnapshot,
} from "./envelope.ts";
import { type Journal, ReplayBridge } from "./journal.ts";
import { decodePayload, encodePayload, type SnapshotPayload } from "./payload.ts";

/** Size bounds of snapshots a server writes and reads. Bytes. */
export interface SnapshotBounds {
  /** Largest envelope written or read (default 128 MiB). */
  maxSnapshotBytes: number;
  /** Largest payload once decompressed (default 1 GiB). */
  maxPayloadBytes: number;
}

/** Default {@link SnapshotBounds}. */
export const DEFAULT_SNAPSHOT_BOUNDS: Readonly<SnapshotBounds> = Object.freeze({
  maxSnapshotBytes: 128 * 1_048_576,
  maxPayloadBytes: 1_073_741_824,
});

/** A session as a snapshot captures it. */
export interface SessionCapture {
  meta: SessionMeta;
  runtime: LanguageRuntime;
  allowedSideEffects: SideEffect[];
  /** The session's journal, or null when it cannot be replayed exactly ({@link journalGap} says why). */
  journal: Journal | null;
  journalGap: string | null;
  /** The session's workspace, if it has one. */
  workspace: Workspace | null;
}

/** A sealed snapshot. */
export interface SealedSnapshot {
  /** SHA3-256 of the bytes (hex): the snapshot id. */
  id: string;
  bytes: Buffer;
  header: SnapshotHeader;
}

/**
 * Takes a snapshot of a session that is not running: its journal, its backend's image where
 * the backend makes one (left out when it would take the snapshot past `maxSnapshotBytes`
 * and the journal is there), and its workspace's files.
 * @throws SandboxError `SNAPSHOT_NOT_SUPPORTED` (neither journal nor image),
 *   `SNAPSHOT_TOO_LARGE` (past `maxSnapshotBytes`).
 */
export async function captureSnapshot(
  capture: SessionCapture,
  key: Uint8Array | null,
  bounds: SnapshotBounds,
): Promise<SealedSnapshot> {
  const { runtime, meta } = capture;
  let image: SnapshotPayload["image"] = null;
  if (runtime.info.snapshotKinds.includes("image")) {
    try {
      const bytes = await runtime.snapshotSession(meta.id);
      image = { bytes, meta: { backend: runtime.info.id, engine: runtime.info.engine } };
    } catch (error) {
      if (!isSandboxError(error) || error.code !== "SNAPSHOT_NOT_SUPPORTED" || !capture.journal)
        throw error;
    }
  }
  if (!image && !capture.journal) {
    throw new SandboxError(
      "SNAPSHOT_NOT_SUPPORTED",
      `Session '${meta.id}' cannot be snapshotted: ${capture.journalGap ?? `${runtime.info.id} keeps no journal`}, and ${runtime.info.id} makes no image.`,
    );
  }
  const workspace = (capture.workspace?.entries() ?? []).map(([path, file]) => ({
    path,
    read_only: file.readOnly,
    modified_at: file.modifiedAt,
    content: file.content,
  }));
  const seal = (withImage: SnapshotPayload["image"]) => {
    const { compressed, rawBytes } = encodePayload({
      session: { runtime: runtime.info.id, allowed_side_effects: capture.allowedSideEffects },
      journal: capture.journal,
      image: withImage,
      workspace,
    });
    const kinds: SnapshotStateKind[] = [];
    if (capture.journal) kinds.push("journal");
    if (withImage) kinds.push("image");
    const header: SnapshotHeader = {
      format: SNAPSHOT_VERSION,
      backend: runtime.info.id,
      engine: runtime.info.engine,
      language: meta.language,
      session: { ...meta, limits: { ...meta.limits } },
      limits: { ...meta.limits },
      kinds,
      created_at: Date.now(),
      compression: "zstd",
      payload_bytes: rawBytes,
    };
    return { ...sealSnapshot(header, compressed, key), header };
  };
  let sealed = seal(image);
  // An image too large to keep is left out when the journal alone rebuilds the session.
  if (sealed.bytes.length > bounds.maxSnapshotBytes && image && capture.journal) {
    sealed = seal(null);
  }
  if (sealed.bytes.length > bounds.maxSnapshotBytes) {
    throw new SandboxError(
      "SNAPSHOT_TOO_LARGE",
      `The snapshot would be ${sealed.bytes.length} bytes; this server keeps snapshots of at most ${bounds.maxSnapshotBytes} (maxSnapshotBytes).`,
    );
  }
  return sealed;
}

/**
 * Whether a backend can restore a snapshot, reading only its header (no digest or signature
 * check): its language must be one the backend runs, and either the snapshot holds a journal
 * and the backend replays journals, or it holds an image of this very backend and build.
 * Backends implement `canRestoreSnapshot` with it.
 */
export function canRestoreWith(info: RuntimeInfo, bytes: Uint8Array): boolean {
  let header: SnapshotHeader;
  try {
    header = peekSnapshotHeader(bytes);
  } catch {
    return false;
  }
  if (!Array.isArray(header.kinds) || !info.languages.includes(header.language)) return false;
  if (header.kinds.includes("journal") && info.snapshotKinds.includes("journal")) return true;
  return (
    header.kinds.includes("image") &&
    info.snapshotKinds.includes("image") &&
    header.backend === info.id &&
    header.engine === info.engine
  );
}

/** An opened, verified, decoded snapshot. */
export interface ReadSnapshot {
  opened: OpenedSnapshot;
  payload: SnapshotPayload;
}

/**
 * Verifies and decodes snapshot bytes (see ./envelope.ts for the order of checks).
 * @throws SandboxError `SNAPSHOT_TOO_LARGE` and every code of `openSnapshot`/`decodePayload`.
 */
export function readSnapshot(
  bytes: Uint8Array,
  keyring: SnapshotKeyring,
  bounds: SnapshotBounds,
): ReadSnapshot {
  if (bytes.byteLength > bounds.maxSnapshotBytes) {
    throw new SandboxError(
      "SNAPSHOT_TOO_LARGE",
      `The snapshot is ${bytes.byteLength} bytes; this server restores snapshots of at most ${bounds.maxSnapshotBytes} (maxSnapshotBytes).`,
    );
  }
  const opened = openSnapshot(bytes, keyring);
  const payload = decodePayload(opened.payload, bounds.maxPayloadBytes);
  const kinds = opened.header.kinds;
  if (kinds.includes("journal") !== (payload.journal !== null)) {
    throw new SandboxError(
      "SNAPSHOT_INVALID",
      "The snapshot's header and payload disagree on its journal.",
    );
  }
  if (kinds.includes("image") !== (payload.image !== null)) {
    throw new SandboxError(
      "SNAPSHOT_INVALID",
      "The snapshot's header and payload disagree on its image.",
    );
  }
  return { opened, payload };
}

/** How a snapshot will be restored. */
export interface RestorePlan {
  runtime: LanguageRuntime;
  kind: SnapshotStateKind;
}

/**
 * Chooses the backend and the kind of state to restore from: `requested` if given, else the
 * backend that took the snapshot if it is here, else the server's backend for the language.
 * An image is used when its backend and exact build are the chosen one's; otherwise the
 * journal is replayed.
 * @throws SandboxError `UNKNOWN_RUNTIME`, `UNSUPPORTED_LANGUAGE`, `SNAPSHOT_INCOMPATIBLE`,
 *   `SNAPSHOT_BUILD_MISMATCH`.
 */
export function planRestore(
  snapshot: ReadSnapshot,
  runtimes: RuntimeRegistry,
  requested?: string,
): RestorePlan {
  const header = snapshot.opened.header;
  let runtime: LanguageRuntime;
  if (requested !== undefined) runtime = runtimes.resolve(header.language, requested);
  else {
    const recorded = runtimes.get(snapshot.payload.session.runtime);
    runtime =
      recorded?.info.languages.includes(header.language) === true
        ? recorded
        : runtimes.resolve(header.language);
  }
  const info = runtime.info;
  const imageFits =
    snapshot.payload.image !== null &&
    info.snapshotKinds.includes("image") &&
    header.backend === info.id &&
    header.engine === info.engine;
  if (imageFits) return { runtime, kind: "image" };
  const journal = snapshot.payload.journal;
  // An empty journal needs no replay: any backend of the language restores it.
  if (journal && (journal.runs.length === 0 || info.snapshotKinds.includes("journal"))) {
    return { runtime, kind: "journal" };
  }
  if (
    snapshot.payload.image &&
    !snapshot.payload.journal &&
    header.backend === info.id &&
    info.snapshotKinds.includes("image") &&
    header.engine !== info.engine
  ) {
    throw new SandboxError(
      "SNAPSHOT_BUILD_MISMATCH",
      `The snapshot holds only an image of ${header.engine}; this server runs ${info.engine}, and images restore only into the same build.`,
    );
  }
  throw new SandboxError(
    "SNAPSHOT_INCOMPATIBLE",
    `Backend '${info.id}' cannot restore this snapshot (it holds ${header.kinds.join(" and ")} state of a ${header.backend} ${header.language} session; '${info.id}' restores ${info.snapshotKinds.join(" and ") || "nothing"}).`,
  );
}

/**
 * Fills an empty workspace (made under this server's workspace limits) with a snapshot's files.
 * @throws SandboxError `SNAPSHOT_INVALID` when a file's path or size is not acceptable here.
 */
export function restoreWorkspace(payload: SnapshotPayload, workspace: Workspace): Workspace {
  for (const file of payload.workspace) {
    try {
      workspace.write(file.path, file.content, {
        readOnly: file.read_only,
        force: true,
        modifiedAt: file.modified_at,
      });
    } catch (error) {
      throw new SandboxError(
        "SNAPSHOT_INVALID",
        `The snapshot's file '${file.path}' cannot be restored here: ${(error as Error).message}`,
      );
    }
  }
  return workspace;
}

/** A replayed run that did not end as it did originally. */
function diverged(index: number, why: string): SandboxError {
  return new SandboxError(
    "SNAPSHOT_DIVERGED",
    `Replaying the journal diverged at run ${index + 1}: ${why}. Nothing was restored.`,
  );
}

/**
 * Replays a journal into an empty session of `runtime`: each run with its recorded inputs,
 * limits, seed and clock, each tool call answered from the journal (the real tools are never
 * called). Every run must end as it did: same status, same result digest, every recorded call
 * made again and no other, the same number of clock reads.
 * @throws SandboxError `SNAPSHOT_DIVERGED` (the caller destroys the session); a backend's
 *   host failure as it rejects.
 */
export async function replayJournal(
  runtime: LanguageRuntime,
  sessionId: SessionId,
  journal: Journal,
  registeredNames: readonly string[],
  signal: AbortSignal,
): Promise<void> {
  for (const [index, run] of journal.runs.entries()) {
    if (signal.aborted) throw diverged(index, "the restore was cancelled");
    // Versions from MIN_SAFE_INTEGER up differ from every registry version (and from a
    // backend's "never synced"), so the guest's tool names resync for each replayed run.
    const bridge = new ReplayBridge(run, registeredNames, Number.MIN_SAFE_INTEGER + index);
    const outcome: RuntimeRunOutcome = await runtime.run({
      runId: `replay-${randomUUID()}`,
      sessionId,
      language: run.language,
      code: run.code,
      inputs: run.inputs,
      limits: run.limits,
      validateOnly: false,
      tools: bridge,
      signal,
      determinism: { seed: run.seed, clock: run.clock },
    });
    if (outcome.status !== run.status) {
      const detail = outcome.error ? ` (${outcome.error.code}: ${outcome.error.message})` : "";
      throw diverged(
        index,
        `it ended ${outcome.status}${detail}, the original ended ${run.status}`,
      );
    }
    if (resultDigestOf(outcome) !== run.result_digest) {
      throw diverged(index, "its result differs from the original's");
    }
    if (bridge.divergence) throw diverged(index, bridge.divergence);
    if (!outcome.clock)
      throw diverged(index, `backend '${runtime.info.id}' does not pin the clock`);
    if (!outcome.clock.complete || outcome.clock.values.length !== run.clock.length) {
      throw diverged(
        index,
        `it read the clock ${outcome.clock.values.length} time(s), the original ${run.clock.length}`,
      );
    }
    if (outcome.sessionReset) throw diverged(index, "the session was reset while replaying");
  }
}

/** A run's `result_digest` for its journal entry: `digest_json` of its result, or null. */
export function resultDigestOf(outcome: Pick<RuntimeRunOutcome, "result">): string | null {
  return outcome.result === null ? null : digestJson(outcome.result);
}
