/**
 * Routes of runner sessions (seed 000, the `sandbox` provider; docs/runner.md): the provider's
 * capabilities, destination checks, sessions (create, resume, get, list, close), commands
 * (run, cancel), files (read, write), ports (not supported), artifacts (export, download) and
 * snapshots. Bodies and answers are seed 000's types with their serde JSON.
 *
 * @module
 */
import type { FastifyInstance } from "fastify";
import type { ArtifactStore } from "../../runner/artifacts.ts";
import {
  parseRunnerArtifactExportRequest,
  parseRunnerCommandRequest,
  parseRunnerDestination,
  parseRunnerFileReadRequest,
  parseRunnerFileWriteRequest,
  parseRunnerPortRequest,
  parseRunnerSessionState,
} from "../../runner/parse.ts";
import type { ProcessRegistry } from "../../runner/process-registry.ts";
import type { SandboxRunnerProvider } from "../../runner/sandbox-provider.ts";
import { RUNNER_REQUEST_SCHEMAS } from "../../runner/schemas.ts";
import { ENVELOPE_RESPONSES } from "./schemas.ts";

/** What the runner routes need. */
export interface RunnerRouteDependencies {
  provider: SandboxRunnerProvider;
  processes: ProcessRegistry;
  artifacts: ArtifactStore;
  /** Largest file write body (contents travel as arrays of numbers: about 4 bytes per byte). */
  fileBodyLimitBytes: number;
}

const runnerSessionParams = {
  type: "object",
  required: ["session_id"],
  properties: { session_id: { type: "string", maxLength: 256 } },
} as const;

const ERRORS = {
  ...ENVELOPE_RESPONSES,
  409: { $ref: "ErrorEnvelope#" },
  501: { $ref: "ErrorEnvelope#" },
} as const;

/** Adds the runner routes to `app`. */
export function registerRunnerRoutes(app: FastifyInstance, deps: RunnerRouteDependencies): void {
  const { provider, artifacts } = deps;
  for (const schema of RUNNER_REQUEST_SCHEMAS) app.addSchema(schema);
  const tags = ["runner"];

  app.get(
    "/v1/runner",
    { schema: { tags, summary: "The runner provider: id, capabilities, setup hint." } },
    async () => ({
      provider_id: provider.id(),
      capabilities: provider.capabilities(),
      setup_hint: provider.setupHint(),
    }),
  );

  app.post<{ Body: unknown }>(
    "/v1/runner/destinations/validate",
    {
      schema: {
        tags,
        summary:
          "Check that the provider can serve a destination (400 invalid_destination says why).",
        body: { $ref: "RunnerDestination#" },
        response: ERRORS,
      },
    },
    async (request) => {
      await provider.validateDestination(parseRunnerDestination(request.body));
      return { valid: true };
    },
  );

  app.post<{ Body: unknown }>(
    "/v1/runner/sessions",
    {
      schema: {
        tags,
        summary: "Create a runner session for a destination (its manifest copied in).",
        body: { $ref: "RunnerDestination#" },
        response: ERRORS,
      },
    },
    async (request, reply) => {
      const session = await provider.createSession(parseRunnerDestination(request.body));
      return reply.code(201).send(session.state());
    },
  );

  app.post<{ Body: unknown }>(
    "/v1/runner/sessions/resume",
    {
      schema: {
        tags,
        summary: "Resume a runner session from its state (restored from its snapshot when gone).",
        body: { $ref: "RunnerSessionState#" },
        response: ERRORS,
      },
    },
    async (request) =>
      (await provider.resumeSession(parseRunnerSessionState(request.body))).state(),
  );

  app.get(
    "/v1/runner/sessions",
    { schema: { tags, summary: "Live runner sessions." } },
    async () => ({ sessions: provider.list().map((session) => session.state()) }),
  );

  app.get<{ Params: { session_id: string } }>(
    "/v1/runner/sessions/:session_id",
    {
      schema: {
        tags,
        summary: "A runner session's state.",
        params: runnerSessionParams,
        response: ERRORS,
      },
    },
    async (request) => provider.get(request.params.session_id).state(),
  );

  app.delete<{ Params: { session_id: string } }>(
    "/v1/runner/sessions/:session_id",
    {
      schema: {
        tags,
        summary: "Close a runner session (its sandbox session is destroyed).",
        params: runnerSessionParams,
        response: ERRORS,
      },
    },
    async (request) => {
      await provider.close(request.params.session_id);
      return { session_id: request.params.session_id, closed: true };
    },
  );

  app.post<{ Params: { session_id: string }; Body: unknown; Querystring: { wait?: string } }>(
    "/v1/runner/sessions/:session_id/commands",
    {
      schema: {
        tags,
        summary:
          "Run a command (docs/runner.md): answers its RunnerCommandResult when it ends; with ?wait=false answers 202 at once (follow /v1/processes/{command_id}).",
        params: runnerSessionParams,
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: { wait: { type: "string", enum: ["true", "false"] } },
        },
        body: { $ref: "RunnerCommandRequest#" },
        response: ERRORS,
      },
    },
    async (request, reply) => {
      const session = provider.get(request.params.session_id);
      const command = parseRunnerCommandRequest(request.body);
      const running = session.runCommand(command);
      if (request.query.wait !== "false") return running;
      // The command goes on; its process is registered before runCommand's first await.
      running.catch(() => {});
      return reply.code(202).send({
        command_id: command.command_id,
        process: deps.processes.require(command.command_id),
      });
    },
  );

  app.post<{ Params: { session_id: string; command_id: string } }>(
    "/v1/runner/sessions/:session_id/commands/:command_id/cancel",
    {
      schema: {
        tags,
        summary: "Cancel a running command; its process ends stopped.",
        params: {
          type: "object",
          required: ["session_id", "command_id"],
          properties: {
            session_id: { type: "string", maxLength: 256 },
            command_id: { type: "string", maxLength: 256 },
          },
        },
        response: ERRORS,
      },
    },
    async (request) => ({
      command_id: request.params.command_id,
      cancelled: await provider
        .get(request.params.session_id)
        .cancelCommand(request.params.command_id),
    }),
  );

  app.post<{ Params: { session_id: string }; Body: unknown }>(
    "/v1/runner/sessions/:session_id/files/read",
    {
      schema: {
        tags,
        summary:
          "Read a workspace file: RunnerFileReadResult (contents as bytes, serde's array of numbers).",
        params: runnerSessionParams,
        body: { $ref: "RunnerFileReadRequest#" },
        response: ERRORS,
      },
    },
    async (request) =>
      provider.get(request.params.session_id).readFile(parseRunnerFileReadRequest(request.body)),
  );

  app.post<{ Params: { session_id: string }; Body: unknown }>(
    "/v1/runner/sessions/:session_id/files/write",
    {
      bodyLimit: deps.fileBodyLimitBytes,
      schema: {
        tags,
        summary: "Write a workspace file (409 workspace_read_only for a read-only manifest entry).",
        params: runnerSessionParams,
        body: { $ref: "RunnerFileWriteRequest#" },
        response: ERRORS,
      },
    },
    async (request) => {
      const write = parseRunnerFileWriteRequest(request.body);
      await provider.get(request.params.session_id).writeFile(write);
      return { path: write.path, bytes: write.contents.length };
    },
  );

  app.post<{ Params: { session_id: string }; Body: unknown }>(
    "/v1/runner/sessions/:session_id/ports",
    {
      schema: {
        tags,
        summary: "Expose a port: always 501 runner_unsupported (sandboxed code has no network).",
        params: runnerSessionParams,
        body: { $ref: "RunnerPortRequest#" },
        response: ERRORS,
      },
    },
    async (request) =>
      provider.get(request.params.session_id).exposePort(parseRunnerPortRequest(request.body)),
  );

  app.post<{ Params: { session_id: string }; Body: unknown }>(
    "/v1/runner/sessions/:session_id/artifacts",
    {
      schema: {
        tags,
        summary:
          "Export a workspace file (or a directory as a tar, with recursive) as a content-addressed artifact.",
        params: runnerSessionParams,
        body: { $ref: "RunnerArtifactExportRequest#" },
        response: ERRORS,
      },
    },
    async (request, reply) => {
      const session = provider.get(request.params.session_id);
      const result = await session.exportArtifact(parseRunnerArtifactExportRequest(request.body));
      return reply.code(201).send(result);
    },
  );

  app.post<{ Params: { session_id: string } }>(
    "/v1/runner/sessions/:session_id/snapshot",
    {
      schema: {
        tags,
        summary:
          "Snapshot a runner session: its RunnerSnapshotRef (keep it in the session state to resume).",
        params: runnerSessionParams,
        response: ERRORS,
      },
    },
    async (request, reply) =>
      reply.code(201).send(await provider.get(request.params.session_id).snapshot()),
  );

  app.get<{ Params: { artifact_id: string } }>(
    "/v1/artifacts/:artifact_id",
    {
      schema: {
        tags,
        summary: "An artifact's bytes (application/octet-stream; ETag is its id).",
        params: {
          type: "object",
          required: ["artifact_id"],
          properties: { artifact_id: { type: "string", maxLength: 256 } },
        },
      },
    },
    async (request, reply) => {
      const id = request.params.artifact_id;
      if (request.headers["if-none-match"] === `"${id}"`) return reply.code(304).send();
      const bytes = await artifacts.get(id);
      return reply
        .header("content-type", "application/octet-stream")
        .header("etag", `"${id}"`)
        .header("cache-control", "private, max-age=31536000, immutable")
        .send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    },
  );
}
