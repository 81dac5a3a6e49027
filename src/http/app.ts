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
  type FastifyServerOptions,
  LogController,
} from "fastify";
import { SHARED_SCHEMAS } from "../contract/schemas.ts";
import type { RunResult } from "../contract/types.ts";
import { type ErrorCode, errorEnvelope, isSandboxError, type SandboxError } from "../errors.ts";
import type { RuntimeRegistry } from "../runtime/registry.ts";
import type { CreateSessionInput, RunInput, SessionManager } from "../session/manager.ts";
import type { ToolRegistry } from "../tools/registry.ts";

/** What the app serves. */
export interface AppDependencies {
  manager: SessionManager;
  runtimes: RuntimeRegistry;
  tools: ToolRegistry;
  /** Bearer token, or null for none. */
  token: string | null;
  /** Largest request body in bytes. */
  bodyLimitBytes: number;
  /** fastify's logger option (pino); `false` for none. */
  logger?: FastifyServerOptions["logger"];
  /** Version string for health and OpenAPI. */
  version?: string;
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
  if (deps.token) installAuth(app, deps.token);

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
          ...(runtime.stats ? { stats: runtime.stats() } : {}),
        })),
        limits: manager.limits,
      };
    },
  );

  app.get("/v1/openapi.json", { schema: { hide: true } }, async () => app.swagger());

  return app;
}

function installAuth(app: FastifyInstance, token: string): void {
  const expected = createHash("sha256").update(token).digest();
  app.addHook("onRequest", async (request, reply) => {
    if (request.url === "/v1/health" || request.url.startsWith("/v1/health?")) return;
    const header = request.headers.authorization ?? "";
    const match = /^Bearer\s+(.+)$/i.exec(header);
    // Hashing both sides gives equal lengths, so the compare takes the same time for any input.
    const given = createHash("sha256")
      .update(match?.[1] ?? "")
      .digest();
    if (!match || !timingSafeEqual(given, expected)) {
      await reply
        .code(401)
        .header("www-authenticate", 'Bearer realm="sandbox"')
        .send(errorEnvelope("UNAUTHORIZED", "A valid bearer token is required."));
    }
  });
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
