/**
 * Routes of the process registry (seed 003; docs/runner.md): `GET /v1/processes` (filter by
 * `runner_session_id`), `GET /v1/processes/{id}`, `POST /v1/processes/{id}/stop`, and
 * `GET /v1/processes/{id}/output` — the output and lifecycle events as Server-Sent Events,
 * resumable from a cursor (`?cursor=N` or the `Last-Event-ID` header), or as one JSON page with
 * `?format=json`. Descriptors and events are camelCase, times RFC 3339, as seed 003's serde.
 *
 * SSE: each event's `event:` is its type (`output`, `started`, `stopping`, `exited`,
 * `stopped`, `failed`) and its `data:` the seed's JSON of it (`ProcessOutput`,
 * `ProcessExited`, …); output events carry `id:` = the chunk's cursor, so a client that
 * reconnects with `Last-Event-ID` gets exactly what followed. The stream starts with a
 * `process` event (the descriptor as it is), then the kept output after the cursor, then live
 * events; it sends `:` comments every 15 s to keep proxies open, and ends after the process's
 * final event.
 *
 * @module
 */
import type { FastifyInstance } from "fastify";
import { SandboxError } from "../../errors.ts";
import type { ProcessEvent } from "../../runner/process-events.ts";
import type { ProcessRegistry } from "../../runner/process-registry.ts";
import { ENVELOPE_RESPONSES } from "./schemas.ts";

const processParams = {
  type: "object",
  required: ["process_id"],
  properties: { process_id: { type: "string", maxLength: 256 } },
} as const;

const HEARTBEAT_MS = 15_000;
const FINAL = new Set(["exited", "stopped", "failed"]);

/** A cursor from the query or `Last-Event-ID`; 0 when neither. @throws `INVALID_REQUEST`. */
function cursorOf(query: string | undefined, lastEventId: string | string[] | undefined): number {
  const raw = query ?? (Array.isArray(lastEventId) ? lastEventId[0] : lastEventId);
  if (raw === undefined || raw === "") return 0;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new SandboxError(
      "INVALID_REQUEST",
      `cursor must be a non-negative integer, not '${raw}'.`,
    );
  }
  return value;
}

/** One SSE message. */
function sse(event: string, data: unknown, id?: number): string {
  const lines = JSON.stringify(data)
    .split("\n")
    .map((line) => `data: ${line}`);
  return `${id !== undefined ? `id: ${id}\n` : ""}event: ${event}\n${lines.join("\n")}\n\n`;
}

/** Adds the process routes to `app`. */
export function registerProcessRoutes(app: FastifyInstance, processes: ProcessRegistry): void {
  const tags = ["processes"];

  app.get<{ Querystring: { runner_session_id?: string; include_finished?: "true" | "false" } }>(
    "/v1/processes",
    {
      schema: {
        tags,
        summary:
          "Processes (runner commands), newest last; finished ones included unless include_finished=false.",
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: {
            runner_session_id: { type: "string", maxLength: 256 },
            include_finished: { type: "string", enum: ["true", "false"] },
          },
        },
      },
    },
    async (request) => ({
      processes: processes.list({
        ...(request.query.runner_session_id !== undefined
          ? { runnerSessionId: request.query.runner_session_id }
          : {}),
        includeFinished: request.query.include_finished !== "false",
      }),
    }),
  );

  app.get<{ Params: { process_id: string } }>(
    "/v1/processes/:process_id",
    {
      schema: {
        tags,
        summary: "A process descriptor (seed 003, camelCase).",
        params: processParams,
        response: ENVELOPE_RESPONSES,
      },
    },
    async (request) => processes.require(request.params.process_id),
  );

  app.post<{ Params: { process_id: string }; Body: { reason?: string } | undefined }>(
    "/v1/processes/:process_id/stop",
    {
      schema: {
        tags,
        summary: "Stop a process (its command is cancelled): ProcessStopResult.",
        params: processParams,
        body: {
          type: "object",
          additionalProperties: false,
          properties: { reason: { type: "string", maxLength: 1_000 } },
        },
        response: ENVELOPE_RESPONSES,
      },
      preValidation: async (request) => {
        request.body ??= {};
      },
    },
    async (request) => processes.stop(request.params.process_id, request.body?.reason ?? null),
  );

  app.get<{
    Params: { process_id: string };
    Querystring: { cursor?: string; format?: "sse" | "json" };
  }>(
    "/v1/processes/:process_id/output",
    {
      schema: {
        tags,
        summary:
          "A process's output and events after a cursor: Server-Sent Events (default; resumable with Last-Event-ID), or ?format=json for one page.",
        params: processParams,
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: {
            cursor: { type: "string", maxLength: 20 },
            format: { type: "string", enum: ["sse", "json"] },
          },
        },
        response: ENVELOPE_RESPONSES,
      },
    },
    async (request, reply) => {
      const id = request.params.process_id;
      const cursor = cursorOf(request.query.cursor, request.headers["last-event-id"]);
      if (request.query.format === "json") {
        const chunks = processes.readOutput(id, cursor);
        return {
          process: processes.require(id),
          chunks,
          cursor: chunks.at(-1)?.cursor ?? cursor,
        };
      }
      // Checks the process and the cursor before the stream starts, so errors are JSON.
      processes.readOutput(id, cursor);
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache, no-transform",
        connection: "keep-alive",
        "x-accel-buffering": "no",
      });
      let closed = false;
      let unsubscribe = () => {};
      const heartbeat = setInterval(() => raw.write(": keep-alive\n\n"), HEARTBEAT_MS);
      heartbeat.unref();
      const end = () => {
        if (closed) return;
        closed = true;
        clearInterval(heartbeat);
        unsubscribe();
        raw.end();
      };
      request.raw.on("close", end);
      let ending = false;
      const deliver = (event: ProcessEvent) => {
        if (closed) return;
        raw.write(sse(event.type, event.data, event.type === "output" ? event.cursor : undefined));
        // The final event ends the stream once the events queued with it are written.
        if (FINAL.has(event.type) && !ending) {
          ending = true;
          setImmediate(end);
        }
      };
      raw.write(sse("process", processes.require(id)));
      unsubscribe = processes.subscribe(id, cursor, deliver).unsubscribe;
      if (closed) unsubscribe();
    },
  );
}
