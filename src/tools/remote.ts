/**
 * Remote tools: a capability whose handler is an HTTP endpoint, registered at run time
 * (`POST /v1/capabilities`, admin token), so tool authors can write tools in any language.
 *
 * The service calls the endpoint once per tool call:
 *
 * - `POST <url>` with `content-type: application/json` and the configured headers; the body
 *   is the ToolCallContext: `{"name", "args", "kwargs", "session_id", "run_id"}`.
 * - A 2xx answer's body is the tool's value (any JSON).
 * - A non-2xx answer fails the call; a body of seed 002's envelope
 *   `{"error": {"code", "message"}}` gives the code and message the guest sees, anything else
 *   gives `REMOTE_TOOL_FAILED`.
 *
 * The call's timeout and the run's cancellation abort the request; redirects are not
 * followed; an answer larger than `max_response_bytes` is cut off (`RESPONSE_TOO_LARGE`).
 *
 * Source: undici (`request`).
 * @module
 */
import { request } from "undici";
import type { Capability, JsonValue } from "../contract/types.ts";
import { type RegisteredTool, ToolError } from "./registry.ts";

/** Where a remote tool lives. */
export interface RemoteEndpoint {
  /** `http:` or `https:` URL the service POSTs calls to. */
  url: string;
  /** Extra request headers (e.g. the endpoint's own credentials); never shown by the API. */
  headers?: Record<string, string>;
}

/**
 * A tool whose handler is `endpoint`.
 * @throws TypeError when the URL is not http(s).
 */
export function createRemoteTool(capability: Capability, endpoint: RemoteEndpoint): RegisteredTool {
  const url = new URL(endpoint.url);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TypeError(`A remote tool's URL must be http: or https:, not ${url.protocol}`);
  }
  const headers = {
    ...endpoint.headers,
    "content-type": "application/json",
    accept: "application/json",
  };
  return {
    capability,
    asyncMode: true,
    origin: "remote",
    async call(context) {
      const body = JSON.stringify({
        name: context.name,
        args: context.args,
        kwargs: context.kwargs,
        session_id: context.session_id ?? null,
        run_id: context.run_id ?? null,
      });
      let response: Awaited<ReturnType<typeof request>>;
      try {
        response = await request(url, {
          method: "POST",
          headers,
          body,
          ...(context.signal ? { signal: context.signal } : {}),
          headersTimeout: capability.limits.timeout_ms,
          bodyTimeout: capability.limits.timeout_ms,
        });
      } catch (error) {
        throw new ToolError(
          "REMOTE_TOOL_FAILED",
          `The endpoint of '${capability.name}' could not be reached: ${(error as Error).message}`,
        );
      }
      const text = await readCapped(
        response.body,
        capability.limits.max_response_bytes + 4_096,
        capability.name,
      );
      let parsed: unknown;
      try {
        parsed = text === "" ? null : JSON.parse(text);
      } catch {
        throw new ToolError(
          "REMOTE_TOOL_FAILED",
          `The endpoint of '${capability.name}' answered HTTP ${response.statusCode} with a body that is not JSON.`,
        );
      }
      if (response.statusCode >= 200 && response.statusCode < 300) return parsed as JsonValue;
      const error = (parsed as { error?: { code?: unknown; message?: unknown } } | null)?.error;
      if (typeof error?.code === "string" && /^[A-Z][A-Z0-9_]{0,63}$/.test(error.code)) {
        throw new ToolError(
          error.code,
          typeof error.message === "string" ? error.message.slice(0, 4_096) : error.code,
        );
      }
      throw new ToolError(
        "REMOTE_TOOL_FAILED",
        `The endpoint of '${capability.name}' answered HTTP ${response.statusCode}.`,
      );
    },
  };
}

async function readCapped(
  body: AsyncIterable<Uint8Array> & { destroy(): void },
  maxBytes: number,
  name: string,
): Promise<string> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += chunk.byteLength;
    if (total > maxBytes) {
      body.destroy();
      throw new ToolError(
        "RESPONSE_TOO_LARGE",
        `The endpoint of '${name}' answered more than ${maxBytes} bytes.`,
      );
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}
