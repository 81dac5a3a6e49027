/**
 * Bearer tokens of the HTTP API. With a token configured, every route but `GET /v1/health`
 * needs `Authorization: Bearer <token>` (else 401 `unauthorized`); admin routes need the
 * admin token (else 403 `forbidden`, also when none is configured). Tokens are compared in
 * time that does not depend on where they differ.
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { errorEnvelope } from "../errors.ts";

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

/**
 * Makes every route but `GET /v1/health` need one of `tokens` as its bearer token; other
 * requests get 401 `unauthorized` with `WWW-Authenticate: Bearer`.
 */
export function installAuth(app: FastifyInstance, tokens: string[]): void {
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
export function adminGuard(
  adminToken: string | null,
): (request: FastifyRequest, reply: FastifyReply) => Promise<void> {
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
