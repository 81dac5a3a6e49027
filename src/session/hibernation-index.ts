/**
 * The hibernation index: which sessions are hibernated, and into which snapshot, kept beside
 * the snapshot store so that hibernated sessions outlive the server process. A server that
 * restarts on the same data dir (with the same `SANDBOX_SNAPSHOT_KEY`) loads the index and
 * wakes those sessions on their next use, as if it had never stopped (docs/snapshots.md,
 * "Hibernation").
 *
 * The index is small (one record per hibernated session, a few hundred bytes each) and is
 * rewritten whole after each change, atomically: a temporary file, fsynced, renamed into
 * place (npm's `write-file-atomic`). A kill mid-write leaves the previous index. One server
 * owns a data dir; two servers sharing one overwrite each other's index.
 *
 * @module
 */
import { mkdir, readFile } from "node:fs/promises";
import { dirname } from "node:path";
import writeFileAtomic from "write-file-atomic";
import { ID_PATTERN_SOURCE } from "../contract/ids.ts";
import { sessionLimitsInputSchema } from "../contract/schemas.ts";
import { LANGUAGES, SIDE_EFFECTS } from "../contract/types.ts";
import { isErrorCode } from "../errors.ts";
import { compileSchema } from "../json-schema.ts";
import type { HibernatedSession } from "./state.ts";

/** Version of the index file's layout (`format` in the file). */
export const HIBERNATION_INDEX_FORMAT = 1;

/**
 * Where hibernated sessions are recorded across restarts. `load` answers the records saved
 * last, dropping (and counting) records that do not parse; `save` replaces them all.
 */
export interface HibernationIndex {
  /**
   * The records saved last: `sessions` that parse, and `rejected`, the number that did not
   * (a damaged or foreign file rejects all). A missing file is an empty index.
   */
  load(): Promise<{ sessions: HibernatedSession[]; rejected: number }>;
  /** Replaces the saved records. @throws the file system's error (the old index stays). */
  save(sessions: readonly HibernatedSession[]): Promise<void>;
}

/** What `SessionManager.resumeHibernated` did with the hibernation index's records. */
export interface HibernationResume {
  /** Sessions hibernated again, to wake on their next use. */
  resumed: number;
  /** Sessions idle past `idleTtlMs`: dropped, with their snapshots unless shared. */
  expired: number;
  /** Sessions whose snapshot is no longer in the store: dropped. */
  missing: number;
  /** Records that did not parse, named an id in use, or passed `maxHibernatedSessions`. */
  rejected: number;
}

/** One hibernated session as the index file holds it. */
const recordSchema = {
  type: "object",
  required: [
    "meta",
    "runtime",
    "allowed_side_effects",
    "run_count",
    "snapshot_id",
    "shared",
    "broken",
  ],
  additionalProperties: false,
  properties: {
    meta: {
      type: "object",
      required: ["id", "created_at", "last_used_at", "language", "limits", "snapshot_version"],
      additionalProperties: false,
      properties: {
        id: { type: "string", pattern: ID_PATTERN_SOURCE },
        created_at: { type: "integer", minimum: 0 },
        last_used_at: { type: "integer", minimum: 0 },
        language: { type: "string", enum: [...LANGUAGES] },
        limits: {
          type: "object",
          required: Object.keys(sessionLimitsInputSchema.properties),
          additionalProperties: false,
          properties: sessionLimitsInputSchema.properties,
        },
        snapshot_version: { type: "integer", minimum: 0 },
      },
    },
    runtime: { type: "string", minLength: 1, maxLength: 64 },
    allowed_side_effects: {
      type: "array",
      items: { type: "string", enum: [...SIDE_EFFECTS] },
      uniqueItems: true,
    },
    run_count: { type: "integer", minimum: 0 },
    snapshot_id: { type: "string", pattern: "^[0-9a-f]{64}$" },
    shared: { type: "boolean" },
    broken: {
      anyOf: [
        {
          type: "object",
          required: ["code", "message"],
          additionalProperties: false,
          properties: { code: { type: "string" }, message: { type: "string" } },
        },
        { type: "null" },
      ],
    },
  },
} as const;

let validateRecord: ReturnType<typeof compileSchema> | undefined;

/** Reads one record of the file; null when it does not parse. */
function parseRecord(value: unknown): HibernatedSession | null {
  validateRecord ??= compileSchema(recordSchema);
  if (!validateRecord(value)) return null;
  const record = value as {
    meta: HibernatedSession["meta"];
    runtime: string;
    allowed_side_effects: HibernatedSession["allowedSideEffects"];
    run_count: number;
    snapshot_id: string;
    shared: boolean;
    broken: { code: string; message: string } | null;
  };
  if (record.broken && !isErrorCode(record.broken.code)) return null;
  return {
    meta: { ...record.meta, limits: { ...record.meta.limits } },
    runtimeId: record.runtime,
    allowedSideEffects: [...record.allowed_side_effects],
    runCount: record.run_count,
    snapshotId: record.snapshot_id,
    shared: record.shared,
    broken: record.broken as HibernatedSession["broken"],
  };
}

/** The file's form of a record (snake_case, as the rest of the wire). */
function toRecord(session: HibernatedSession): unknown {
  return {
    meta: session.meta,
    runtime: session.runtimeId,
    allowed_side_effects: session.allowedSideEffects,
    run_count: session.runCount,
    snapshot_id: session.snapshotId,
    shared: session.shared,
    broken: session.broken,
  };
}

/**
 * A {@link HibernationIndex} in one JSON file (`{"format": 1, "sessions": [...]}`), written
 * atomically with fsync; the server's is `<dataDir>/hibernated.json`.
 *
 * Source: `write-file-atomic` (npm) for the write; the records are checked with ajv on load.
 */
export class FsHibernationIndex implements HibernationIndex {
  readonly #path: string;

  /** @param path the index file (its directory is created on the first save). */
  constructor(path: string) {
    this.#path = path;
  }

  /** The index file's path. */
  get path(): string {
    return this.#path;
  }

  async load(): Promise<{ sessions: HibernatedSession[]; rejected: number }> {
    let text: string;
    try {
      text = await readFile(this.#path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return { sessions: [], rejected: 0 };
      throw error;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return { sessions: [], rejected: 1 };
    }
    const file = parsed as { format?: unknown; sessions?: unknown };
    if (
      typeof parsed !== "object" ||
      parsed === null ||
      file.format !== HIBERNATION_INDEX_FORMAT ||
      !Array.isArray(file.sessions)
    ) {
      return { sessions: [], rejected: 1 };
    }
    const sessions: HibernatedSession[] = [];
    const seen = new Set<string>();
    let rejected = 0;
    for (const value of file.sessions) {
      const session = parseRecord(value);
      if (!session || seen.has(session.meta.id)) rejected += 1;
      else {
        seen.add(session.meta.id);
        sessions.push(session);
      }
    }
    return { sessions, rejected };
  }

  async save(sessions: readonly HibernatedSession[]): Promise<void> {
    const text = JSON.stringify({
      format: HIBERNATION_INDEX_FORMAT,
      sessions: sessions.map(toRecord),
    });
    await mkdir(dirname(this.#path), { recursive: true });
    await writeFileAtomic(this.#path, `${text}\n`, { mode: 0o600, fsync: true });
  }
}
