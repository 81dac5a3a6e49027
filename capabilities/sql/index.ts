/**
 * `sql`: an in-memory SQLite database per session — `sql_query(sql, params?)` for one
 * statement (its rows, or its changes) and `sql_exec(script)` for several (no results).
 *
 * Databases live in a worker thread of the server (./worker.ts), are dropped when their
 * session ends, and cannot reach the host: no extensions, no ATTACH (so no other database
 * file, and no `VACUUM INTO`), no pragmas but read-only introspection ones, and a size budget
 * (`maxDatabaseBytes`, default 64 MiB; past it: "database or disk is full"). A query that
 * outlives its call's timeout terminates the worker — SQLite cannot be interrupted otherwise —
 * and every session's database is lost with it (the error says so).
 *
 * Values: integers beyond 2^53 come back as strings, blobs as `{"$base64": "..."}` (also
 * accepted as parameters). Positional parameters are an array (`?`), named ones an object
 * (`:name`, `$name`, `@name`).
 *
 * Source: node:sqlite (SQLite built into Node.js).
 * @module
 */
import { Worker } from "node:worker_threads";
import {
  type CapabilityPlugin,
  createAsyncTool,
  type PluginHost,
  type RegisteredTool,
  ToolError,
} from "../../src/index.ts";

/** Options of {@link createSqlTools}. */
export interface SqlOptions {
  /** Bytes one session's database may hold (default 64 MiB). */
  maxDatabaseBytes?: number;
  /** Rows one query may return (default 10,000). */
  maxRows?: number;
  /** Per-call timeout in ms (default 5,000). */
  timeoutMs?: number;
}

interface Reply {
  id: number;
  ok: boolean;
  result?: unknown;
  code?: string;
  message?: string;
}

/**
 * Whether `sql` holds more than one statement: text after a `;` that is not whitespace or a
 * comment (quotes, identifiers and comments are skipped while scanning).
 */
export function hasSeveralStatements(sql: string): boolean {
  let seenEnd = false;
  for (let i = 0; i < sql.length; i++) {
    const char = sql[i]!;
    if (char === "-" && sql[i + 1] === "-") {
      const end = sql.indexOf("\n", i);
      i = end < 0 ? sql.length : end;
      continue;
    }
    if (char === "/" && sql[i + 1] === "*") {
      const end = sql.indexOf("*/", i + 2);
      i = end < 0 ? sql.length : end + 1;
      continue;
    }
    if (/\s/.test(char)) continue;
    // An empty statement (`;;`) is no statement, but what follows it is: returning at the
    // second `;` let `SELECT 1;; DELETE ...` through, and SQLite silently ignored the rest.
    if (seenEnd && char !== ";") return true;
    if (char === ";") {
      seenEnd = true;
      continue;
    }
    const close = char === "'" || char === '"' || char === "`" ? char : char === "[" ? "]" : null;
    if (close) {
      const end = sql.indexOf(close, i + 1);
      i = end < 0 ? sql.length : end;
    }
  }
  return false;
}

/** Builds the SQL tools. `host` tells the pack when sessions end. */
export function createSqlTools(options: SqlOptions = {}, host?: PluginHost): RegisteredTool[] {
  const workerOptions = {
    maxDatabaseBytes: options.maxDatabaseBytes ?? 64 * 1_048_576,
    maxRows: options.maxRows ?? 10_000,
  };
  const timeoutMs = options.timeoutMs ?? 5_000;
  let worker: Worker | null = null;
  let nextId = 0;
  /** Calls waiting for a reply, by the worker they went to. */
  const pending = new Map<Worker, Map<number, (reply: Reply) => void>>();

  const start = (): Worker => {
    if (worker) return worker;
    const started = new Worker(new URL("./worker.ts", import.meta.url), {
      workerData: workerOptions,
    });
    const calls = new Map<number, (reply: Reply) => void>();
    pending.set(started, calls);
    started.on("message", (reply: Reply) => {
      calls.get(reply.id)?.(reply);
      calls.delete(reply.id);
    });
    const lost = (why: string) => {
      if (worker === started) worker = null;
      for (const settle of calls.values())
        settle({ id: 0, ok: false, code: "SQL_DATABASE_LOST", message: why });
      calls.clear();
      pending.delete(started);
    };
    started.on("error", (error) => lost(`The SQL worker failed: ${error.message}`));
    started.on("exit", () => lost("The SQL worker stopped; every session's database was lost."));
    // After the listeners: attaching a "message" listener references the worker again.
    started.unref();
    worker = started;
    return started;
  };

  const send = (message: Record<string, unknown>, signal?: AbortSignal): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const id = ++nextId;
      const target = start();
      const calls = pending.get(target)!;
      const onAbort = () => {
        // The query is still running inside SQLite: only terminating the thread stops it.
        if (!calls.delete(id)) return;
        if (worker === target) worker = null;
        void target.terminate();
        reject(
          new ToolError(
            "SQL_DATABASE_LOST",
            "The query ran past its time; the SQL worker was stopped and every session's database was lost.",
          ),
        );
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      calls.set(id, (reply) => {
        signal?.removeEventListener("abort", onAbort);
        if (reply.ok) resolve(reply.result ?? null);
        else reject(new ToolError(reply.code ?? "SQL_ERROR", reply.message ?? "SQL failed"));
      });
      target.postMessage({ id, ...message });
    });

  /**
   * The call's signal, also aborted after `timeoutMs`. The pack's own timer fires before the
   * gateway's (`timeout_ms` is a second longer), so the caller gets SQL_DATABASE_LOST, which
   * says every database was lost; with only the gateway's timer the guest saw a bare
   * TOOL_TIMEOUT and found its tables gone later without being told.
   */
  const callSignal = (signal: AbortSignal | undefined): AbortSignal =>
    AbortSignal.any([AbortSignal.timeout(timeoutMs), ...(signal ? [signal] : [])]);

  host?.onSessionDestroyed((sessionId) => {
    if (worker) void send({ kind: "drop", sessionId }).catch(() => {});
  });

  return [
    createAsyncTool(
      {
        name: "sql_query",
        description:
          "Runs one SQL statement on the session's SQLite database; returns {columns, rows, changes, last_insert_rowid}. Parameters: an array for ?, an object for :name.",
        side_effect: "database",
        idempotent: false,
        input_schema: {
          type: "array",
          prefixItems: [
            { title: "sql", type: "string", maxLength: 100_000 },
            { title: "params", type: ["array", "object"] },
          ],
          minItems: 1,
          maxItems: 2,
        },
        output_schema: {
          type: "object",
          properties: {
            columns: { type: "array", items: { type: "string" } },
            rows: { type: "array", items: { type: "array" } },
            changes: { type: "integer" },
            last_insert_rowid: {},
          },
          required: ["columns", "rows", "changes", "last_insert_rowid"],
        },
        limits: { timeout_ms: timeoutMs + 1_000, max_response_bytes: 16 * 1_048_576 },
      },
      async (context) => {
        const sql = context.args[0] as string;
        if (hasSeveralStatements(sql)) {
          throw new ToolError(
            "SQL_MULTIPLE_STATEMENTS",
            "sql_query runs one statement; use sql_exec for a script of several.",
          );
        }
        return (await send(
          {
            kind: "query",
            sessionId: context.session_id ?? "",
            sql,
            params: context.args[1] ?? [],
          },
          callSignal(context.signal),
        )) as never;
      },
    ),
    createAsyncTool(
      {
        name: "sql_exec",
        description:
          "Runs a script of SQL statements (separated by ;) on the session's SQLite database; returns true.",
        side_effect: "database",
        idempotent: false,
        input_schema: {
          type: "array",
          prefixItems: [{ title: "script", type: "string", maxLength: 1_000_000 }],
          minItems: 1,
          maxItems: 1,
        },
        output_schema: { const: true },
        limits: { timeout_ms: timeoutMs + 1_000 },
      },
      async (context) => {
        await send(
          { kind: "exec", sessionId: context.session_id ?? "", sql: context.args[0] as string },
          callSignal(context.signal),
        );
        return true;
      },
    ),
  ];
}

/** The plugin the server loads from configuration. Options: {@link SqlOptions}. */
export const plugin: CapabilityPlugin = {
  kind: "capabilities",
  id: "sql",
  create: (options, host) => createSqlTools(options as SqlOptions, host),
};
