/**
 * The HTTP API (fastify 5, request bodies checked by ajv 8 against ./contract/schemas.ts).
 *
 * Every RunResult is answered 200 whatever its status. Everything else that goes wrong is a
 * 4xx/5xx with seed 002's envelope `{"error": {"code", "message"}}` (lower_snake code from
 * docs/errors.md) — never a stack trace. When a token is configured, every route but
 * `GET /v1/health` needs `Authorization: Bearer <token>`.
 *
 * Routes: docs/api.md, and the OpenAPI document at `GET /v1/openapi.json`. This module builds
 * the app and its shared plumbing (JSON parsing, schemas, OpenAPI, ./errors.ts, ./auth.ts);
 * the routes are in ./routes/, one module per area.
 *
 * @module
 */
import swagger from "@fastify/swagger";
import Fastify, { type FastifyInstance, type FastifyServerOptions, LogController } from "fastify";
import { SHARED_SCHEMAS } from "../contract/schemas.ts";
import type { RuntimeRegistry } from "../runtime/registry.ts";
import type { SessionManager } from "../session/manager.ts";
import type { ToolRegistry } from "../tools/registry.ts";
import { adminGuard, installAuth } from "./auth.ts";
import { installErrorHandling } from "./errors.ts";
import { registerProcessRoutes } from "./routes/processes.ts";
import { type RunnerRouteDependencies, registerRunnerRoutes } from "./routes/runner.ts";
import { registerRunRoutes } from "./routes/runs.ts";
import { type RuntimeSummaryDependencies, registerRuntimeRoute } from "./routes/runtime.ts";
import { registerHealthRoute, registerServiceRoutes } from "./routes/service.ts";
import { registerSessionRoutes } from "./routes/sessions.ts";
import { registerSnapshotRoutes } from "./routes/snapshots.ts";
import { registerToolRoutes } from "./routes/tools.ts";

/** What the app serves. */
export interface AppDependencies {
  /**
   * Runner sessions, processes and `GET /v1/runtime` (docs/runner.md); absent: those routes
   * are not served.
   */
  runner?: RunnerRouteDependencies &
    Omit<RuntimeSummaryDependencies, "manager" | "runtimes" | "provider" | "processes">;
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
  const service = { manager, runtimes, version: deps.version };
  // Routes are added in the order the OpenAPI document lists them.
  registerHealthRoute(app, service);
  registerRunRoutes(app, manager);
  registerSessionRoutes(app, manager);
  // Room for a snapshot of the largest size as base64 in JSON; past maxSnapshotBytes itself
  // the restore answers snapshot_too_large, past this limit the body is payload_too_large.
  const snapshotLimit = deps.snapshotBodyLimitBytes ?? 128 * 1_048_576;
  await registerSnapshotRoutes(app, manager, Math.ceil((snapshotLimit * 4) / 3) + 1_048_576);
  registerToolRoutes(app, { manager, tools, requireAdmin });
  registerServiceRoutes(app, service);
  if (deps.runner) {
    const runner = deps.runner;
    registerRunnerRoutes(app, runner);
    registerProcessRoutes(app, runner.processes);
    registerRuntimeRoute(app, { ...runner, manager, runtimes });
  }

  return app;
}
