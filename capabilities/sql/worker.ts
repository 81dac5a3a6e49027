/**
 * The SQL pack's worker thread: one in-memory SQLite database per session. Started by
 * ./index.ts, which terminates it when a query outlives its call (SQLite through node:sqlite
 * cannot be interrupted otherwise).
 *
 * Every database is opened with extensions off, ATTACH impossible (limit 0 and the
 * authorizer), `VACUUM INTO` and every pragma but a few read-only ones refused, and a page
 * budget (`max_page_count`) for its size.
 *
 * @module
 */
import { constants, DatabaseSync } from "node:sqlite";
import { parentPort, workerData } from "node:worker_threads";

interface Options {
  maxDatabaseBytes: number;
  maxRows: number;
}

type Request =
  | { id: number; kind: "query"; sessionId: string; sql: string; params: unknown }
  | { id: number; kind: "exec"; sessionId: string; sql: string }
  | { id: number; kind: "drop"; sessionId: string };

const options = workerData as Options;
const databases = new Map<string, DatabaseSync>();
const PAGE_BYTES = 4_096;
const READ_ONLY_PRAGMAS = new Set([
  "table_info",
  "table_xinfo",
  "table_list",
  "index_list",
  "index_info",
  "index_xinfo",
  "foreign_key_list",
  "collation_list",
  "function_list",
]);

function database(sessionId: string): DatabaseSync {
  let db = databases.get(sessionId);
  if (!db) {
    // `length` bounds one string or blob (zeroblob, repeat...) to the database's own budget:
    // such values are built in memory before any page limit applies.
    db = new DatabaseSync(":memory:", {
      allowExtension: false,
      limits: { attach: 0, length: Math.min(1_000_000_000, options.maxDatabaseBytes) },
    });
    const pages = Math.max(8, Math.floor(options.maxDatabaseBytes / PAGE_BYTES));
    // The budget covers the temp schema too: `max_page_count` is per schema, and without the
    // second pair a TEMP table grew without bound however small maxDatabaseBytes was.
    db.exec(
      `PRAGMA page_size = ${PAGE_BYTES}; PRAGMA max_page_count = ${pages}; PRAGMA temp.page_size = ${PAGE_BYTES}; PRAGMA temp.max_page_count = ${pages};`,
    );
    db.setAuthorizer((action, first) => {
      if (action === constants.SQLITE_ATTACH || action === constants.SQLITE_DETACH)
        return constants.SQLITE_DENY;
      if (action === constants.SQLITE_PRAGMA && !READ_ONLY_PRAGMAS.has(String(first).toLowerCase()))
        return constants.SQLITE_DENY;
      return constants.SQLITE_OK;
    });
    databases.set(sessionId, db);
  }
  return db;
}

/** JSON for a SQLite value: big integers as strings, blobs as {"$base64"}. */
function toJson(value: unknown): unknown {
  if (typeof value === "bigint") {
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(value)
      : value.toString();
  }
  if (value instanceof Uint8Array) return { $base64: Buffer.from(value).toString("base64") };
  return value;
}

function bindable(value: unknown): string | number | null | Uint8Array {
  if (value === null || typeof value === "string" || typeof value === "number") return value;
  if (typeof value === "boolean") return value ? 1 : 0;
  if (
    typeof value === "object" &&
    value !== null &&
    typeof (value as { $base64?: unknown }).$base64 === "string"
  ) {
    return Buffer.from((value as { $base64: string }).$base64, "base64");
  }
  throw Object.assign(
    new Error('SQL parameters must be null, numbers, strings, booleans or {"$base64": ...}'),
    { code: "INVALID_ARGUMENTS" },
  );
}

function query(sessionId: string, sql: string, params: unknown) {
  const statement = database(sessionId).prepare(sql);
  statement.setReadBigInts(true);
  const bound = Array.isArray(params)
    ? params.map(bindable)
    : params && typeof params === "object"
      ? [Object.fromEntries(Object.entries(params).map(([key, value]) => [key, bindable(value)]))]
      : [];
  const columns = statement.columns().map((column) => column.name);
  if (columns.length === 0) {
    const result = statement.run(...(bound as never[]));
    return {
      columns: [],
      rows: [],
      changes: Number(result.changes),
      last_insert_rowid: toJson(result.lastInsertRowid),
    };
  }
  statement.setReturnArrays(true);
  const rows: unknown[][] = [];
  for (const row of statement.iterate(...(bound as never[])) as Iterable<unknown[]>) {
    if (rows.length >= options.maxRows) {
      throw Object.assign(
        new Error(`The query returns more than ${options.maxRows} rows; add a LIMIT.`),
        { code: "SQL_TOO_MANY_ROWS" },
      );
    }
    rows.push(row.map(toJson));
  }
  return { columns, rows, changes: 0, last_insert_rowid: null };
}

parentPort!.on("message", (request: Request) => {
  try {
    let result: unknown = null;
    if (request.kind === "query") result = query(request.sessionId, request.sql, request.params);
    else if (request.kind === "exec") database(request.sessionId).exec(request.sql);
    else {
      databases.get(request.sessionId)?.close();
      databases.delete(request.sessionId);
    }
    parentPort!.postMessage({ id: request.id, ok: true, result });
  } catch (error) {
    const code = (error as { code?: string }).code;
    parentPort!.postMessage({
      id: request.id,
      ok: false,
      code: code === "INVALID_ARGUMENTS" || code === "SQL_TOO_MANY_ROWS" ? code : "SQL_ERROR",
      message: (error as Error).message,
    });
  }
});
