/**
 * The HTTP API (fastify 5, request bodies checked by ajv 8 against ./contract/schemas.ts).
 *
 * Every RunResult is answered 200 whatever its status. Everything else that goes wrong is a
 * 4xx/5xx with seed 002's envelope `{"error": {"code", "message"}}` (lower_snake code from
 * docs/errors.md) — never a stack trace. When a token is configured, every route but
 * `GET /v1/health` needs `Authorization: Bearer <token>`.
 *
 * Routes: docs/api.md, and the OpenAPI document at `GET /v1/openapi.json`.
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";
import swagger from "@fastify/swagger";
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
  LogController,
} from "fastify";
import { restoreRequestSchema, SHARED_SCHEMAS } from "../contract/schemas.ts";
import type { RunResult } from "../contract/types.ts";
import { type ErrorCode, errorEnvelope, isSandboxError, SandboxError } from "../errors.ts";
import { compileSchema, describeSchemaErrors } from "../json-schema.ts";
import type { RuntimeRegistry } from "../runtime/registry.ts";
import type {
  CreateSessionInput,
  RestoreInput,
  RunInput,
  SessionManager,
} from "../session/manager.ts";
import type { ApprovalStatus } from "../tools/approvals.ts";
import { type CapabilityInit, defineCapability, type ToolRegistry } from "../tools/registry.ts";
import { createRemoteTool, type RemoteEndpoint } from "../tools/remote.ts";

/** What the app serves. */
export interface AppDependencies {
  manager: SessionManager;
  runtimes: RuntimeRegistry;
  tools: ToolRegistry;
  /** Bearer token, or null for none. */
  token: string | null;
  /** Admin token (remote tool registration), or null: admin routes answer 403. */
  adminToken?: string | null;
  /** Largest request body in bytes. */
  bodyLimitBytes: number;
  /** fastify's logger option (pino); `false` for none. */
  logger?: FastifyServerOptions["logger"];
  /** Version string for health and OpenAPI. */
  version?: string;
  /** Largest snapshot upload in bytes (default 128 MiB; the manager's maxSnapshotBytes). */
  snapshotBodyLimitBytes?: number;
}

const ENVELOPE_RESPONSES = {
  400: { $ref: "ErrorEnvelope#" },
  401: { $ref: "ErrorEnvelope#" },
  404: { $ref: "ErrorEnvelope#" },
  429: { $ref: "ErrorEnvelope#" },
} as const;

const sessionParams = {
  type: "object",
  required: ["session_id"],
  properties: { session_id: { type: "string", maxLength: 256 } },
} as const;

const snapshotParams = {
  type: "object",
  required: ["snapshot_id"],
  properties: { snapshot_id: { type: "string", maxLength: 256 } },
} as const;

const SNAPSHOT_MEDIA_TYPE = "application/octet-stream";

const runParams = {
  type: "object",
  required: ["run_id"],
  properties: { run_id: { type: "string", maxLength: 256 } },
} as const;

/**
 * Builds the app (not listening). Call `app.listen()` or use `app.inject()`.
 */
export async function buildApp(deps: AppDependencies): Promise<FastifyInstance> {
  const app = Fastify({
    logger: deps.logger ?? false,
    bodyLimit: deps.bodyLimitBytes,
    // Access logs for every request but health checks.
    logController: new LogController({
      disableRequestLogging: (request) => request.url.startsWith("/v1/health"),
    }),
    ajv: {
      // Unknown fields are refused (not stripped) and nothing is coerced.
      customOptions: {
        removeAdditional: false,
        coerceTypes: false,
        useDefaults: false,
        allErrors: false,
      },
    },
  });

  // Empty bodies (e.g. `POST /v1/runs/{id}/cancel` with a JSON content type) are allowed;
  // the rest goes to fastify's own parser, which refuses `__proto__` and `constructor` keys.
  const defaultJsonParser = app.getDefaultJsonParser("error", "error");
  // JSON only: any other content type is 415.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) => {
    if (typeof body === "string" && body.trim() === "") {
      done(null, undefined);
      return;
    }
    defaultJsonParser(request, String(body), done);
  });

  for (const schema of SHARED_SCHEMAS) app.addSchema(schema);

  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "Sandbox runner API",
        description: "Run code for AI agents in sandboxed sessions. See docs/api.md.",
        version: deps.version ?? "0.1.0",
      },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
      security: [{ bearer: [] }],
    },
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`),
    },
  });

  installErrorHandling(app);
  const adminToken = deps.adminToken ?? null;
  if (deps.token) installAuth(app, [deps.token, ...(adminToken ? [adminToken] : [])]);
  const requireAdmin = adminGuard(adminToken);

  const { manager, runtimes, tools } = deps;
  const startedAt = Date.now();

  app.get(
    "/v1/health",
    { schema: { tags: ["service"], summary: "Liveness; needs no token.", security: [] } },
    async () => ({
      status: "ok",
      version: deps.version ?? "0.1.0",
      uptime_ms: Date.now() - startedAt,
      sessions: manager.sessionCount,
      runtimes: runtimes.list().map((runtime) => runtime.info.id),
    }),
  );

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
  const snapshotLimit = deps.snapshotBodyLimitBytes ?? 128 * 1_048_576;
  await app.register(async (scope) => {
    scope.addContentTypeParser(
      SNAPSHOT_MEDIA_TYPE,
      { parseAs: "buffer", bodyLimit: snapshotLimit },
      (_request, body, done) => done(null, body),
    );

    scope.post<{ Body: Buffer }>(
      "/v1/snapshots",
      {
        bodyLimit: snapshotLimit,
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
        bodyLimit: snapshotLimit,
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

  app.get(
    "/v1/capabilities",
    {
      schema: {
        tags: ["tools"],
        summary: "The tools guest code may call.",
        response: {
          200: {
            type: "object",
            required: ["capabilities"],
            properties: { capabilities: { type: "array", items: { $ref: "Capability#" } } },
          },
        },
      },
    },
    async () => ({ capabilities: tools.capabilities() }),
  );

  app.post<{ Body: CapabilityInit & { endpoint: RemoteEndpoint } }>(
    "/v1/capabilities",
    {
      schema: {
        tags: ["tools"],
        summary:
          "Register (or replace) a remote tool whose handler is an HTTP endpoint; needs the admin token.",
        body: { $ref: "RemoteCapabilityRequest#" },
        response: {
          201: { $ref: "Capability#" },
          ...ENVELOPE_RESPONSES,
          403: { $ref: "ErrorEnvelope#" },
          409: { $ref: "ErrorEnvelope#" },
        },
      },
      onRequest: requireAdmin,
    },
    async (request, reply) => {
      const { endpoint, ...init } = request.body;
      const existing = tools.get(init.name);
      if (existing && existing.origin !== "remote") {
        throw new SandboxError(
          "CAPABILITY_EXISTS",
          `'${init.name}' is provided by the server's configuration.`,
        );
      }
      const capability = defineCapability(init);
      tools.register(createRemoteTool(capability, endpoint));
      return reply.code(201).send(capability);
    },
  );

  app.delete<{ Params: { name: string } }>(
    "/v1/capabilities/:name",
    {
      schema: {
        tags: ["tools"],
        summary: "Unregister a remote tool; needs the admin token.",
        params: {
          type: "object",
          required: ["name"],
          properties: { name: { type: "string", maxLength: 128 } },
        },
      },
      onRequest: requireAdmin,
    },
    async (request) => {
      const tool = tools.get(request.params.name);
      if (!tool)
        throw new SandboxError("CAPABILITY_NOT_FOUND", `No tool '${request.params.name}'.`);
      if (tool.origin !== "remote") {
        throw new SandboxError(
          "CAPABILITY_EXISTS",
          `'${request.params.name}' is provided by the server's configuration.`,
        );
      }
      tools.unregister(request.params.name);
      return { name: request.params.name, removed: true };
    },
  );

  app.get<{ Querystring: { language?: "typescript" | "python" } }>(
    "/v1/capabilities/stubs",
    {
      schema: {
        tags: ["tools"],
        summary:
          "Typed declarations of the tools, for the model writing code (TypeScript .d.ts or Python .pyi).",
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: { language: { type: "string", enum: ["typescript", "python"] } },
        },
      },
    },
    async (request) => {
      const language = request.query.language ?? "typescript";
      const source = await manager.stubs.get(language);
      return { language, filename: language === "python" ? "tools.pyi" : "tools.d.ts", source };
    },
  );

  app.get<{
    Querystring: { status?: ApprovalStatus | "all"; session_id?: string; run_id?: string };
  }>(
    "/v1/approvals",
    {
      schema: {
        tags: ["approvals"],
        summary: "Tool calls waiting for a person (status=pending, the default), or past ones.",
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: {
            status: {
              type: "string",
              enum: ["pending", "approved", "denied", "expired", "cancelled", "all"],
            },
            session_id: { type: "string", maxLength: 64 },
            run_id: { type: "string", maxLength: 64 },
          },
        },
        response: {
          200: {
            type: "object",
            required: ["approvals"],
            properties: { approvals: { type: "array", items: { $ref: "Approval#" } } },
          },
        },
      },
    },
    async (request) => ({
      approvals: manager.approvals.list({
        ...(request.query.status ? { status: request.query.status } : {}),
        ...(request.query.session_id ? { sessionId: request.query.session_id } : {}),
        ...(request.query.run_id ? { runId: request.query.run_id } : {}),
      }),
    }),
  );

  const approvalParams = {
    type: "object",
    required: ["approval_id"],
    properties: { approval_id: { type: "string", maxLength: 64 } },
  } as const;

  app.get<{ Params: { approval_id: string } }>(
    "/v1/approvals/:approval_id",
    {
      schema: {
        tags: ["approvals"],
        summary: "One approval.",
        params: approvalParams,
        response: { 200: { $ref: "Approval#" }, 404: { $ref: "ErrorEnvelope#" } },
      },
    },
    async (request) => manager.approvals.get(request.params.approval_id),
  );

  app.post<{
    Params: { approval_id: string };
    Body: { decision: "approve" | "deny"; reason?: string };
  }>(
    "/v1/approvals/:approval_id",
    {
      schema: {
        tags: ["approvals"],
        summary: "Approve or deny a waiting tool call; the run goes on at once.",
        params: approvalParams,
        body: { $ref: "ApprovalDecision#" },
        response: {
          200: { $ref: "Approval#" },
          404: { $ref: "ErrorEnvelope#" },
          409: { $ref: "ErrorEnvelope#" },
        },
      },
    },
    async (request) =>
      manager.approvals.decide(
        request.params.approval_id,
        request.body.decision === "approve",
        request.body.reason,
      ),
  );

  app.get(
    "/v1/runtimes",
    { schema: { tags: ["service"], summary: "The backends and what each supports." } },
    async () => {
      const defaults = runtimes.defaults();
      return {
        runtimes: runtimes.list().map((runtime) => ({
          ...runtime.info,
          default_for: Object.entries(defaults)
            .filter(([, id]) => id === runtime.info.id)
            .map(([language]) => language),
        })),
        limits: manager.limits,
      };
    },
  );

  app.get("/v1/openapi.json", { schema: { hide: true } }, async () => app.swagger());

  return app;
}

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

/** The bearer token of a request, or "". */
function bearerOf(header: string | undefined): string {
  return /^Bearer\s+(.+)$/i.exec(header ?? "")?.[1] ?? "";
}

/** Compares a token with an expected one in time independent of where they differ. */
function tokenMatches(given: string, expected: string): boolean {
  // Hashing both sides gives equal lengths, so the compare takes the same time for any input.
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b) && given !== "";
}

function installAuth(app: FastifyInstance, tokens: string[]): void {
  app.addHook("onRequest", async (request, reply) => {
    if (request.url === "/v1/health" || request.url.startsWith("/v1/health?")) return;
    const given = bearerOf(request.headers.authorization);
    // Every configured token is compared, so timing does not tell which one matched.
    const matched = tokens.map((token) => tokenMatches(given, token)).some(Boolean);
    if (!matched) {
      await reply
        .code(401)
        .header("www-authenticate", 'Bearer realm="sandbox"')
        .send(errorEnvelope("UNAUTHORIZED", "A valid bearer token is required."));
    }
  });
}

/** An onRequest hook for admin routes: needs the admin token; 403 when none is configured. */
function adminGuard(adminToken: string | null) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    if (!adminToken) {
      await reply
        .code(403)
        .send(
          errorEnvelope(
            "FORBIDDEN",
            "Admin routes are disabled: the server has no SANDBOX_ADMIN_TOKEN.",
          ),
        );
      return;
    }
    if (!tokenMatches(bearerOf(request.headers.authorization), adminToken)) {
      await reply.code(403).send(errorEnvelope("FORBIDDEN", "This route needs the admin token."));
    }
  };
}

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_JSON_BODY: "INVALID_JSON",
  FST_ERR_CTP_EMPTY_JSON_BODY: "INVALID_JSON",
  FST_ERR_CTP_BODY_TOO_LARGE: "PAYLOAD_TOO_LARGE",
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "UNSUPPORTED_MEDIA_TYPE",
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: "INVALID_REQUEST",
  FST_ERR_CTP_INVALID_TYPE: "UNSUPPORTED_MEDIA_TYPE",
};

function installErrorHandling(app: FastifyInstance): void {
  app.setNotFoundHandler(async (request, reply) =>
    reply
      .code(404)
      .send(errorEnvelope("NOT_FOUND", `No route ${request.method} ${request.url.split("?")[0]}.`)),
  );
  app.setErrorHandler(async (error: FastifyError | SandboxError | Error, request, reply) => {
    if (isSandboxError(error)) {
      if (error.code === "SESSION_BUSY" || error.code === "SESSION_LIMIT_REACHED")
        reply.header("retry-after", "1");
      return reply
        .code(error.httpStatus)
        .send(errorEnvelope(error.code, error.message, error.hint));
    }
    const fastifyError = error as FastifyError;
    if (fastifyError.validation) {
      const where = fastifyError.validationContext ?? "request";
      const detail = fastifyError.validation
        .slice(0, 3)
        .map((issue) => {
          const path = `${where}${issue.instancePath ?? ""}`;
          const extra = (issue.params as { additionalProperty?: string }).additionalProperty;
          return `${path} ${issue.message ?? "is invalid"}${extra ? ` ('${extra}')` : ""}`;
        })
        .join("; ");
      return reply.code(400).send(errorEnvelope("INVALID_REQUEST", detail));
    }
    const mapped = fastifyError.code ? FASTIFY_CODES[fastifyError.code] : undefined;
    if (mapped) {
      const status =
        mapped === "PAYLOAD_TOO_LARGE" ? 413 : mapped === "UNSUPPORTED_MEDIA_TYPE" ? 415 : 400;
      const message =
        mapped === "INVALID_JSON"
          ? `The body is not valid JSON: ${fastifyError.message}`
          : fastifyError.message;
      return reply.code(status).send(errorEnvelope(mapped, message));
    }
    if (error instanceof SyntaxError || fastifyError.code === "FST_ERR_CTP_INVALID_JSON_BODY") {
      return reply.code(400).send(errorEnvelope("INVALID_JSON", "The body is not valid JSON."));
    }
    const statusCode = fastifyError.statusCode;
    if (statusCode !== undefined && statusCode >= 400 && statusCode < 500) {
      return reply.code(statusCode).send(errorEnvelope("INVALID_REQUEST", fastifyError.message));
    }
    request.log.error({ err: error }, "unexpected error");
    return reply.code(500).send(errorEnvelope("INTERNAL_ERROR", "An unexpected error occurred."));
  });
}
