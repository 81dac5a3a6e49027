/**
 * `files`: the session's virtual workspace (src/workspace.ts) for guest code —
 * `read_file(path, encoding?)`, `write_file(path, content, encoding?)`, `list_dir(path?)`,
 * `delete_file(path)`.
 *
 * Files live in the server's memory, per session (no session sees another's), under quotas
 * (default 32 MiB, 1,000 files, 8 MiB per file). Paths are relative to the workspace root; a
 * path that climbs out of it (`../x`) is refused with `WORKSPACE_PATH_INVALID`. Text is UTF-8;
 * pass `encoding: "base64"` for binary content. The runner surface shares these workspaces,
 * and snapshots carry them.
 *
 * @module
 */
import {
  type CapabilityPlugin,
  createSyncTool,
  DEFAULT_WORKSPACE_LIMITS,
  isSandboxError,
  type PluginHost,
  type RegisteredTool,
  type ToolCallContext,
  ToolError,
  type Workspace,
  type WorkspaceRegistry,
} from "../../src/index.ts";

const PATH = { title: "path", type: "string", maxLength: 1_024 };
const ENCODING = { title: "encoding", type: "string", enum: ["utf-8", "base64"] };

/**
 * Request/response bytes a file of the default per-file quota needs (base64 is 4/3 of it,
 * plus room for the JSON around it). Without this the gateway's default 1 MiB limits refused
 * files between 1 and 8 MiB with REQUEST_TOO_LARGE / RESPONSE_TOO_LARGE although the
 * workspace takes them.
 */
const FILE_MESSAGE_BYTES = Math.ceil((DEFAULT_WORKSPACE_LIMITS.maxFileBytes * 4) / 3) + 65_536;

/** Standard base64, padding optional (whitespace is removed before the test). */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;

/**
 * Decodes base64 content, refusing text that is not base64: Buffer.from(text, "base64")
 * silently skips invalid characters, so a mistaken encoding stored garbage without an error.
 */
function decodeBase64(text: string): Buffer {
  if (!BASE64.test(text.replace(/\s+/g, "")))
    throw new ToolError("INVALID_ARGUMENTS", "The content is not valid base64.");
  return Buffer.from(text, "base64");
}

/** Runs a workspace operation, turning its errors into tool errors the guest sees. */
function withWorkspace<T>(
  workspaces: WorkspaceRegistry,
  context: ToolCallContext,
  body: (workspace: Workspace) => T,
): T {
  try {
    return body(workspaces.get(context.session_id ?? ""));
  } catch (error) {
    if (isSandboxError(error)) throw new ToolError(error.code, error.message);
    throw error;
  }
}

/** Builds the files tools over a host's workspaces. */
export function createFileTools(workspaces: WorkspaceRegistry): RegisteredTool[] {
  return [
    createSyncTool(
      {
        name: "read_file",
        description:
          "Reads a file of the session's workspace. Text is decoded as UTF-8; pass encoding 'base64' for binary files.",
        side_effect: "read",
        input_schema: { type: "array", prefixItems: [PATH, ENCODING], minItems: 1, maxItems: 2 },
        output_schema: { type: "string" },
        limits: { max_response_bytes: FILE_MESSAGE_BYTES },
      },
      (context) =>
        withWorkspace(workspaces, context, (workspace) => {
          const bytes = workspace.read(context.args[0] as string);
          if (context.args[1] === "base64") return Buffer.from(bytes).toString("base64");
          try {
            return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
          } catch {
            throw new ToolError(
              "FILE_NOT_TEXT",
              `'${context.args[0]}' is not UTF-8 text; read it with encoding 'base64'.`,
            );
          }
        }),
    ),
    createSyncTool(
      {
        name: "write_file",
        description:
          "Writes a file of the session's workspace (creating directories as needed, replacing what was there). Returns the path and size.",
        side_effect: "write",
        input_schema: {
          type: "array",
          prefixItems: [PATH, { title: "content", type: "string" }, ENCODING],
          minItems: 2,
          maxItems: 3,
        },
        output_schema: {
          type: "object",
          properties: { path: { type: "string" }, size: { type: "integer" } },
          required: ["path", "size"],
        },
        limits: { max_request_bytes: FILE_MESSAGE_BYTES },
      },
      (context) =>
        withWorkspace(workspaces, context, (workspace) => {
          const text = context.args[1] as string;
          const content = context.args[2] === "base64" ? decodeBase64(text) : text;
          const path = workspace.write(context.args[0] as string, content);
          return { path, size: workspace.stat(path)!.content.byteLength };
        }),
    ),
    createSyncTool(
      {
        name: "list_dir",
        description:
          "Lists a directory of the session's workspace (default: its root): names, types and sizes.",
        side_effect: "read",
        input_schema: { type: "array", prefixItems: [PATH], maxItems: 1 },
        output_schema: {
          type: "array",
          items: {
            type: "object",
            properties: {
              name: { type: "string" },
              path: { type: "string" },
              type: { type: "string", enum: ["file", "dir"] },
              size: { type: "integer" },
            },
            required: ["name", "path", "type", "size"],
          },
        },
      },
      (context) =>
        withWorkspace(workspaces, context, (workspace) =>
          workspace
            .list((context.args[0] as string | undefined) ?? "")
            .map((entry) => ({ ...entry })),
        ),
    ),
    createSyncTool(
      {
        name: "delete_file",
        description: "Deletes a file of the session's workspace; returns whether it existed.",
        side_effect: "write",
        input_schema: { type: "array", prefixItems: [PATH], minItems: 1, maxItems: 1 },
        output_schema: { type: "boolean" },
      },
      (context) =>
        withWorkspace(workspaces, context, (workspace) =>
          workspace.delete(context.args[0] as string),
        ),
    ),
  ];
}

/** The plugin the server loads from configuration. */
export const plugin: CapabilityPlugin = {
  kind: "capabilities",
  id: "files",
  create: (_options, host: PluginHost) => createFileTools(host.workspaces),
};
