/**
 * Routes of runs: `POST /v1/runs` (run code, answer its RunResult), `GET /v1/runs` (runs not
 * finished), `GET /v1/runs/{id}` (one run; `wait_ms` long-polls) and
 * `POST /v1/runs/{id}/cancel`. Every RunResult is answered 200 whatever its status.
 *
 * @module
 */
import type { FastifyInstance } from "fastify";
import type { RunResult } from "../../contract/types.ts";
import type { SessionManager } from "../../session/manager.ts";
import type { RunInput } from "../../session/types.ts";
import { ENVELOPE_RESPONSES } from "./schemas.ts";

const runParams = {
  type: "object",
  required: ["run_id"],
  properties: { run_id: { type: "string", maxLength: 256 } },
} as const;

/** Adds the run routes to `app`, served by `manager`. */
export function registerRunRoutes(app: FastifyInstance, manager: SessionManager): void {
  app.post<{ Body: RunInput }>(
    "/v1/runs",
    {
      schema: {
        tags: ["runs"],
        summary: "Run code in a session (created on first use); answers its RunResult.",
        body: { $ref: "RunRequest#" },
        response: { 200: { $ref: "RunResult#" }, ...ENVELOPE_RESPONSES },
      },
    },
    async (request): Promise<RunResult> => manager.run(request.body),
  );

  app.get<{ Params: { run_id: string }; Querystring: { wait_ms?: string } }>(
    "/v1/runs/:run_id",
    {
      schema: {
        tags: ["runs"],
        summary: "A run's state and, once finished, its RunResult; wait_ms long-polls (max 60000).",
        params: runParams,
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: { wait_ms: { type: "string", pattern: "^[0-9]{1,6}$" } },
        },
      },
    },
    async (request) => {
      const waitMs = Math.min(60_000, Number(request.query.wait_ms ?? 0));
      return manager.waitForRun(request.params.run_id, waitMs);
    },
  );

  app.get(
    "/v1/runs",
    { schema: { tags: ["runs"], summary: "Runs queued or running." } },
    async () => ({
      runs: manager.activeRuns(),
    }),
  );

  app.post<{ Params: { run_id: string } }>(
    "/v1/runs/:run_id/cancel",
    { schema: { tags: ["runs"], summary: "Cancel a queued or running run.", params: runParams } },
    async (request) => ({
      run_id: request.params.run_id,
      cancelled: manager.cancelRun(request.params.run_id),
    }),
  );
}
