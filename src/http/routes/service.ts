/**
 * Routes of the service itself: `GET /v1/health` (liveness; needs no token),
 * `GET /v1/runtimes` (the backends, what each supports, and the server's limits) and
 * `GET /v1/openapi.json` (the OpenAPI document of every route).
 *
 * @module
 */
import type { FastifyInstance } from "fastify";
import type { RuntimeRegistry } from "../../runtime/registry.ts";
import type { SessionManager } from "../../session/manager.ts";

/** What the service routes are served by. */
export interface ServiceRouteDependencies {
  manager: SessionManager;
  runtimes: RuntimeRegistry;
  /** Version string for health (default "0.1.0"). */
  version?: string | undefined;
}

/**
 * Adds `GET /v1/health` to `app`; its uptime counts from now. Registered first, so it leads
 * the OpenAPI document.
 */
export function registerHealthRoute(app: FastifyInstance, deps: ServiceRouteDependencies): void {
  const { manager, runtimes } = deps;
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
}

/** Adds `GET /v1/runtimes` and `GET /v1/openapi.json` to `app` (after every other route). */
export function registerServiceRoutes(app: FastifyInstance, deps: ServiceRouteDependencies): void {
  const { manager, runtimes } = deps;

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
}
