/**
 * Routes of tools and approvals: `GET /v1/capabilities` (the tools guest code may call),
 * `POST /v1/capabilities` and `DELETE /v1/capabilities/{name}` (remote tools; admin token),
 * `GET /v1/capabilities/stubs` (typed declarations for the model writing code), and
 * `GET /v1/approvals`, `GET` and `POST /v1/approvals/{id}` (tool calls waiting for a person).
 *
 * @module
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { SandboxError } from "../../errors.ts";
import type { SessionManager } from "../../session/manager.ts";
import type { ApprovalStatus } from "../../tools/approvals.ts";
import { type CapabilityInit, defineCapability, type ToolRegistry } from "../../tools/registry.ts";
import { createRemoteTool, type RemoteEndpoint } from "../../tools/remote.ts";
import { ENVELOPE_RESPONSES } from "./schemas.ts";

/** What the tool routes are served by. */
export interface ToolRouteDependencies {
  manager: SessionManager;
  tools: ToolRegistry;
  /** The onRequest hook of admin routes (../auth.ts's `adminGuard`). */
  requireAdmin: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
}

/** Adds the capability, stub and approval routes to `app`. */
export function registerToolRoutes(app: FastifyInstance, deps: ToolRouteDependencies): void {
  const { manager, tools, requireAdmin } = deps;

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
}
