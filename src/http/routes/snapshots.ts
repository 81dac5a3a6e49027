/**
 * Routes of snapshots (docs/snapshots.md): `POST /v1/sessions/{id}/snapshot` (snapshot a
 * session into the store), `GET /v1/snapshots` (what the store holds), `GET` and `DELETE
 * /v1/snapshots/{id}`, `POST /v1/snapshots` (upload bytes, verified then stored) and
 * `POST /v1/sessions/restore` (JSON, or the bytes themselves).
 *
 * Snapshot bytes travel as `application/octet-stream`; only the upload and restore routes
 * parse that media type (in a scope of their own, with the snapshot body limit), so every
 * other route still answers 415 to it.
 *
 * @module
 */
import type { FastifyInstance } from "fastify";
import { restoreRequestSchema } from "../../contract/schemas.ts";
import { SandboxError } from "../../errors.ts";
import { compileSchema, describeSchemaErrors } from "../../json-schema.ts";
import type { SessionManager } from "../../session/manager.ts";
import type { RestoreInput } from "../../session/types.ts";
import { ENVELOPE_RESPONSES, sessionParams } from "./schemas.ts";

const snapshotParams = {
  type: "object",
  required: ["snapshot_id"],
  properties: { snapshot_id: { type: "string", maxLength: 256 } },
} as const;

const SNAPSHOT_MEDIA_TYPE = "application/octet-stream";

/** The JSON body of `POST /v1/sessions/restore`. */
interface RestoreRequestBody {
  snapshot_id?: string;
  snapshot?: string;
  session_id?: string;
  runtime?: string;
}

const validateRestoreBody = (() => {
  const { $id: _id, ...schema } = restoreRequestSchema;
  return compileSchema(schema);
})();

/** Strict base64 (RFC 4648, padding optional). @throws SandboxError `INVALID_REQUEST`. */
function decodeBase64(text: string): Buffer {
  const compact = text.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || compact.length % 4 === 1) {
    throw new SandboxError("INVALID_REQUEST", "body/snapshot is not base64.");
  }
  return Buffer.from(compact, "base64");
}

/**
 * Adds the snapshot routes to `app`, served by `manager`; uploads and restores take at most
 * `snapshotBodyLimitBytes` of bytes.
 */
export async function registerSnapshotRoutes(
  app: FastifyInstance,
  manager: SessionManager,
  snapshotBodyLimitBytes: number,
): Promise<void> {
  app.post<{ Params: { session_id: string } }>(
    "/v1/sessions/:session_id/snapshot",
    {
      schema: {
        tags: ["snapshots"],
        summary: "Snapshot a session into the store (taken once its running run ends).",
        params: sessionParams,
        response: {
          201: { $ref: "SnapshotInfo#" },
          ...ENVELOPE_RESPONSES,
          409: { $ref: "ErrorEnvelope#" },
          413: { $ref: "ErrorEnvelope#" },
          501: { $ref: "ErrorEnvelope#" },
          507: { $ref: "ErrorEnvelope#" },
        },
      },
    },
    async (request, reply) =>
      reply.code(201).send(await manager.snapshotSession(request.params.session_id)),
  );

  app.get(
    "/v1/snapshots",
    {
      schema: {
        tags: ["snapshots"],
        summary: "Stored snapshots, newest first, and the store's usage.",
      },
    },
    async () => manager.listSnapshots(),
  );

  app.get<{ Params: { snapshot_id: string } }>(
    "/v1/snapshots/:snapshot_id",
    {
      schema: {
        tags: ["snapshots"],
        summary: "A snapshot's bytes (application/octet-stream; docs/snapshots.md has the format).",
        params: snapshotParams,
      },
    },
    async (request, reply) => {
      const bytes = await manager.getSnapshot(request.params.snapshot_id);
      return reply
        .header("content-type", SNAPSHOT_MEDIA_TYPE)
        .header("etag", `"${request.params.snapshot_id}"`)
        .header("content-disposition", `attachment; filename="${request.params.snapshot_id}.snap"`)
        .send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    },
  );

  app.delete<{ Params: { snapshot_id: string } }>(
    "/v1/snapshots/:snapshot_id",
    {
      schema: { tags: ["snapshots"], summary: "Delete a stored snapshot.", params: snapshotParams },
    },
    async (request) => {
      await manager.deleteSnapshot(request.params.snapshot_id);
      return { snapshot_id: request.params.snapshot_id, deleted: true };
    },
  );

  // Snapshot bytes arrive as application/octet-stream: this scope alone parses them.
  await app.register(async (scope) => {
    scope.addContentTypeParser(
      SNAPSHOT_MEDIA_TYPE,
      { parseAs: "buffer", bodyLimit: snapshotBodyLimitBytes },
      (_request, body, done) => done(null, body),
    );

    scope.post<{ Body: Buffer }>(
      "/v1/snapshots",
      {
        bodyLimit: snapshotBodyLimitBytes,
        schema: {
          tags: ["snapshots"],
          summary:
            "Upload snapshot bytes (application/octet-stream); they are verified, then stored.",
          response: { 201: { $ref: "SnapshotInfo#" }, ...ENVELOPE_RESPONSES },
        },
      },
      async (request, reply) => {
        if (!Buffer.isBuffer(request.body)) {
          throw new SandboxError(
            "UNSUPPORTED_MEDIA_TYPE",
            `Upload the snapshot's bytes as ${SNAPSHOT_MEDIA_TYPE}.`,
          );
        }
        return reply.code(201).send(await manager.putSnapshot(request.body));
      },
    );

    scope.post<{
      Body: Buffer | RestoreRequestBody | undefined;
      Querystring: { session_id?: string; runtime?: string };
    }>(
      "/v1/sessions/restore",
      {
        bodyLimit: snapshotBodyLimitBytes,
        schema: {
          tags: ["snapshots"],
          summary:
            "Restore a session: JSON {snapshot_id | snapshot (base64), session_id?, runtime?}, or the bytes as application/octet-stream with ?session_id=&runtime=.",
          querystring: {
            type: "object",
            additionalProperties: false,
            properties: {
              session_id: { type: "string", maxLength: 256 },
              runtime: { type: "string", maxLength: 200 },
            },
          },
          response: {
            201: { $ref: "RestoreInfo#" },
            ...ENVELOPE_RESPONSES,
            409: { $ref: "ErrorEnvelope#" },
            413: { $ref: "ErrorEnvelope#" },
          },
        },
        preValidation: async (request) => {
          if (Buffer.isBuffer(request.body)) return;
          const body = request.body ?? {};
          if (!validateRestoreBody(body)) {
            throw new SandboxError(
              "INVALID_REQUEST",
              `body ${describeSchemaErrors(validateRestoreBody.errors)}`,
            );
          }
        },
      },
      async (request, reply) => {
        const body = request.body;
        let input: RestoreInput;
        if (Buffer.isBuffer(body)) {
          input = { snapshot: body, ...request.query };
        } else {
          const json = (body ?? {}) as RestoreRequestBody;
          if (json.snapshot !== undefined && request.query.session_id !== undefined) {
            throw new SandboxError(
              "INVALID_REQUEST",
              "Give session_id in the body or the query, not both.",
            );
          }
          input = {
            ...(json.snapshot_id !== undefined ? { snapshot_id: json.snapshot_id } : {}),
            ...(json.snapshot !== undefined ? { snapshot: decodeBase64(json.snapshot) } : {}),
            ...request.query,
            ...(json.session_id !== undefined ? { session_id: json.session_id } : {}),
            ...(json.runtime !== undefined ? { runtime: json.runtime } : {}),
          };
        }
        return reply.code(201).send(await manager.restoreSession(input));
      },
    );
  });
}
