/**
 * How the HTTP API answers what goes wrong: a SandboxError with its code's status (from the
 * registry in ../errors.ts), fastify's own errors (bad JSON, too large, wrong media type,
 * schema validation) mapped to codes of docs/errors.md, unknown routes as `not_found`, and
 * anything else as a 500 `internal_error` that is logged, never shown. Every answer is seed
 * 002's envelope `{"error": {"code", "message"}}`.
 *
 * @module
 */
import type { FastifyError, FastifyInstance } from "fastify";
import { type ErrorCode, errorEnvelope, isSandboxError, type SandboxError } from "../errors.ts";

/** fastify's error codes that the API answers with a code of its own. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_JSON_BODY: "INVALID_JSON",
  FST_ERR_CTP_EMPTY_JSON_BODY: "INVALID_JSON",
  FST_ERR_CTP_BODY_TOO_LARGE: "PAYLOAD_TOO_LARGE",
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "UNSUPPORTED_MEDIA_TYPE",
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: "INVALID_REQUEST",
  FST_ERR_CTP_INVALID_TYPE: "UNSUPPORTED_MEDIA_TYPE",
};

/**
 * Sets the app's not-found and error handlers (see the module comment). `SESSION_BUSY` and
 * `SESSION_LIMIT_REACHED` also get `Retry-After: 1`.
 */
export function installErrorHandling(app: FastifyInstance): void {
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
