/**
 * Building a session from a verified snapshot (a restore, or a hibernated session waking):
 * the backend loads the snapshot's image, or a new backend session replays its journal, and
 * its workspace's files come back. The session is answered, not registered: the caller
 * decides under which id and when it becomes visible.
 *
 * @module
 */
import {
  type SessionId,
  type SessionLimits,
  type SideEffect,
  SNAPSHOT_VERSION,
} from "../contract/types.ts";
import type { RuntimeRegistry } from "../runtime/registry.ts";
import type { SnapshotStateKind } from "../snapshot/envelope.ts";
import {
  planRestore,
  type ReadSnapshot,
  replayJournal,
  restoreWorkspace,
} from "../snapshot/snapshots.ts";
import type { ToolRegistry } from "../tools/registry.ts";
import type { Workspace, WorkspaceRegistry } from "../workspace.ts";
import { mergeLimits } from "./limits.ts";
import { type HibernatedSession, newSessionState, type SessionState } from "./state.ts";
import { rememberCell } from "./typecheck.ts";

/** What {@link materialize} needs of the session manager. */
export interface MaterializeContext {
  runtimes: RuntimeRegistry;
  tools: ToolRegistry;
  workspaces: WorkspaceRegistry;
  /** The server's ceilings: a snapshot's limits must be within them. */
  ceilings: SessionLimits;
  /** Side-effect classes any session may use; the snapshot's are narrowed to them. */
  allowedSideEffects: ReadonlySet<SideEffect>;
}

/** A session built from a snapshot, and how. */
export interface Materialized {
  session: SessionState;
  /** `image` (the backend loaded it) or `journal` (its runs were replayed). */
  kind: SnapshotStateKind;
  /** Journal runs replayed (0 for an image). */
  replayed: number;
}

/**
 * Builds a session from a verified snapshot: loads the image or replays the journal into a
 * new backend session, restores the workspace, and answers the session (not yet
 * registered). On failure the backend session is destroyed and nothing remains.
 *
 * `runtimeId` picks the backend (default: the snapshot's, if here, else the language's);
 * `hibernated` is the record of a session waking from hibernation (it keeps its times and
 * run count), or null for a restore.
 * @throws SandboxError `SNAPSHOT_*` (docs/errors.md), `LIMIT_EXCEEDS_CEILING`,
 *   `UNKNOWN_RUNTIME`, `UNSUPPORTED_LANGUAGE`, or what the backend failed with.
 */
export async function materialize(
  id: SessionId,
  read: ReadSnapshot,
  runtimeId: string | undefined,
  hibernated: HibernatedSession | null,
  context: MaterializeContext,
): Promise<Materialized> {
  const header = read.opened.header;
  const plan = planRestore(read, context.runtimes, runtimeId);
  // The snapshot's limits count as asked for: each must be within this server's ceilings.
  const limits = mergeLimits(header.limits, header.limits, context.ceilings);
  const journal = read.payload.journal;
  for (const run of journal?.runs ?? []) mergeLimits(run.limits, run.limits, context.ceilings);
  let workspace: Workspace | null = null;
  if (read.payload.workspace.length > 0) {
    workspace = restoreWorkspace(read.payload, context.workspaces.blank());
  }
  let kind = plan.kind;
  let replayed = 0;
  const runtime = plan.runtime;
  if (kind === "image") {
    try {
      await runtime.restoreSession(read.payload.image!.bytes, id, limits);
    } catch (error) {
      // An image the backend refuses falls back to the journal, when there is one.
      if (!journal || !runtime.info.snapshotKinds.includes("journal")) throw error;
      await runtime.destroySession(id).catch(() => false);
      kind = "journal";
    }
  }
  if (kind === "journal") {
    await runtime.createSession(id, limits, header.language);
    try {
      await replayJournal(
        runtime,
        id,
        journal!,
        context.tools.names(),
        new AbortController().signal,
      );
    } catch (error) {
      await runtime.destroySession(id).catch(() => false);
      throw error;
    }
    replayed = journal!.runs.length;
  }
  const now = Date.now();
  const session = newSessionState({
    meta: {
      id,
      created_at: hibernated?.meta.created_at ?? header.session.created_at,
      last_used_at: hibernated?.meta.last_used_at ?? now,
      language: header.language,
      limits,
      snapshot_version: SNAPSHOT_VERSION,
    },
    runtime,
    allowedSideEffects: new Set(
      read.payload.session.allowed_side_effects.filter((effect) =>
        context.allowedSideEffects.has(effect),
      ),
    ),
    runCount: hibernated?.runCount ?? 0,
    journal: journal ? [...journal.runs] : [],
    journalGap: journal ? null : "it was restored from an image without a journal",
  });
  for (const run of session.journal) {
    session.journalBytes += JSON.stringify(run).length;
    rememberCell({ session, language: run.language, code: run.code, inputs: run.inputs });
  }
  if (workspace) context.workspaces.set(id, workspace);
  return { session, kind, replayed };
}
