/**
 * Routes of sessions: `POST /v1/sessions` (create one; 201), `GET /v1/sessions` (every
 * session), `GET /v1/sessions/{id}` and `DELETE /v1/sessions/{id}` (destroy it; its running run
 * is cancelled). Snapshot and restore routes are in ./snapshots.ts.
 *
 * @module
 */
import type { FastifyInstance } from "fastify";
import type { SessionManager } from "../../session/manager.ts";
import type { CreateSessionInput } from "../../session/types.ts";
import { ENVELOPE_RESPONSES, sessionParams } from "./schemas.ts";

/** Adds the session routes to `app`, served by `manager`. */
export function registerSessionRoutes(app: FastifyInstance, manager: SessionManager): void {
  app.post<{ Body: CreateSessionInput | undefined }>(
    "/v1/sessions",
    {
      schema: {
        tags: ["sessions"],
        summary: "Create a session (id generated when not given).",
        body: { $ref: "CreateSessionRequest#" },
        response: {
          201: { $ref: "SessionInfo#" },
          ...ENVELOPE_RESPONSES,
          409: { $ref: "ErrorEnvelope#" },
        },
      },
      preValidation: async (request) => {
        request.body ??= {};
      },
    },
    async (request, reply) => {
      const info = await manager.createSession(request.body ?? {});
      return reply.code(201).send(info);
    },
  );

  app.get(
    "/v1/sessions",
    { schema: { tags: ["sessions"], summary: "Every session." } },
    async () => ({
      sessions: manager.listSessions(),
    }),
  );

  app.get<{ Params: { session_id: string } }>(
    "/v1/sessions/:session_id",
    {
      schema: {
        tags: ["sessions"],
        summary: "One session.",
        params: sessionParams,
        response: { 200: { $ref: "SessionInfo#" }, ...ENVELOPE_RESPONSES },
      },
    },
    async (request) => manager.getSession(request.params.session_id),
  );

  app.delete<{ Params: { session_id: string } }>(
    "/v1/sessions/:session_id",
    {
      schema: {
        tags: ["sessions"],
        summary: "Destroy a session (its running run is cancelled).",
        params: sessionParams,
      },
    },
    async (request) => {
      await manager.destroySession(request.params.session_id);
      return { session_id: request.params.session_id, destroyed: true };
    },
  );
}
