/**
 * `http`: `http_fetch(url, options?)` — an HTTP request from guest code, within what the
 * deployment allows. Off by default: the pack is not in the default configuration, and with
 * no `allow` list every URL is refused.
 *
 * Options (configuration):
 * - `allow`: URL prefixes a request (and every redirect) must start with, e.g.
 *   `"https://api.example.com/"`; a `*.` host wildcard matches subdomains
 *   (`"https://*.wikipedia.org/"`).
 * - `methods`: methods allowed (default `["GET", "HEAD"]`).
 * - `maxResponseBytes` (default 1 MiB), `timeoutMs` (default 10 s), `maxRedirects` (default 5).
 * - `allowPrivateNetwork` (default false): unless true, a request whose host resolves to a
 *   loopback, private, link-local, unique-local or otherwise non-public address is refused.
 *   The check runs on the address actually connected to, so DNS rebinding gains nothing.
 *
 * Redirects are followed by the pack itself, each target checked against `allow` (and the
 * address rules) before it is fetched. The answer is `{status, url, headers, body}` with the
 * body as UTF-8 text (or base64 when `options.encoding` is "base64").
 *
 * Source: undici (Agent with a checking DNS lookup), ipaddr.js (address ranges).
 * @module
 */
import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import { isIP } from "node:net";
import ipaddr from "ipaddr.js";
import { Agent, request } from "undici";
import {
  type CapabilityPlugin,
  createAsyncTool,
  type RegisteredTool,
  ToolError,
} from "../../src/index.ts";

/** Options of {@link createHttpTools}. */
export interface HttpOptions {
  allow?: string[];
  methods?: string[];
  maxResponseBytes?: number;
  timeoutMs?: number;
  maxRedirects?: number;
  allowPrivateNetwork?: boolean;
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const REFUSED_HEADERS = new Set([
  "host",
  "connection",
  "content-length",
  "transfer-encoding",
  "upgrade",
  "proxy-authorization",
]);

/** Whether an address is public (not loopback, private, link-local, reserved...). */
export function isPublicAddress(address: string): boolean {
  let parsed = ipaddr.parse(address);
  if (parsed.kind() === "ipv6" && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) {
    parsed = (parsed as ipaddr.IPv6).toIPv4Address();
  }
  return parsed.range() === "unicast";
}

/**
 * Whether `url` is under one of the allowed prefixes `scheme://host[:port][/path]`, where
 * `host` may start with `*.` to match its subdomains (not itself). End path prefixes with `/`:
 * `https://api.example.com/v1` also matches `/v1beta`.
 */
export function isAllowed(url: URL, allow: readonly string[]): boolean {
  const defaultPort = url.protocol === "https:" ? "443" : "80";
  const hostname = url.hostname.toLowerCase();
  return allow.some((pattern) => {
    const match = /^(https?):\/\/(\*\.)?([^/:?#]+)(?::(\d+))?(\/[^?#]*)?$/i.exec(pattern.trim());
    if (!match) return false;
    const [, scheme = "", wildcard, host = "", port, path = "/"] = match;
    if (`${scheme.toLowerCase()}:` !== url.protocol) return false;
    if ((port ?? defaultPort) !== (url.port || defaultPort)) return false;
    const wanted = host.toLowerCase();
    const hostOk = wildcard ? hostname.endsWith(`.${wanted}`) : hostname === wanted;
    return hostOk && url.pathname.startsWith(path);
  });
}

function fail(code: string, message: string): never {
  throw new ToolError(code, message);
}

/** Builds `http_fetch` for a deployment's options. */
export function createHttpTools(options: HttpOptions = {}): RegisteredTool[] {
  const allow = options.allow ?? [];
  const methods = new Set(
    (options.methods ?? ["GET", "HEAD"]).map((method) => method.toUpperCase()),
  );
  const maxBytes = options.maxResponseBytes ?? 1_048_576;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const maxRedirects = options.maxRedirects ?? 5;
  const allowPrivate = options.allowPrivateNetwork ?? false;

  // Every connection resolves through this lookup, which refuses non-public addresses.
  const agent = new Agent({
    connect: {
      lookup(hostname, lookupOptions, callback) {
        dnsLookup(hostname, { ...lookupOptions, all: true }, (error, addresses) => {
          if (error) return callback(error, "", 0);
          const list = addresses as LookupAddress[];
          const usable = allowPrivate
            ? list
            : list.filter((entry) => isPublicAddress(entry.address));
          if (usable.length === 0) {
            return callback(
              Object.assign(new Error(`${hostname} resolves to no public address`), {
                code: "EPRIVATE",
              }),
              "",
              0,
            );
          }
          if ((lookupOptions as { all?: boolean }).all)
            return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, usable);
          return callback(null, usable[0]!.address, usable[0]!.family);
        });
      },
    },
  });

  const checkTarget = (url: URL) => {
    if (url.protocol !== "http:" && url.protocol !== "https:")
      fail("HTTP_URL_NOT_ALLOWED", `Only http and https URLs can be fetched, not ${url.protocol}`);
    if (url.username || url.password)
      fail("HTTP_URL_NOT_ALLOWED", "URLs with credentials are refused.");
    if (!isAllowed(url, allow))
      fail(
        "HTTP_URL_NOT_ALLOWED",
        `${url.origin}${url.pathname} is not on this deployment's allow list.`,
      );
    const host = url.hostname.replace(/^\[|\]$/g, "");
    if (!allowPrivate && isIP(host) && !isPublicAddress(host))
      fail("HTTP_URL_NOT_ALLOWED", `${host} is not a public address.`);
  };

  return [
    createAsyncTool(
      {
        name: "http_fetch",
        description: `Fetches a URL over HTTP(S) and returns {status, url, headers, body}. Allowed URL prefixes: ${allow.join(", ") || "none"}. Methods: ${[...methods].join(", ")}.`,
        side_effect: "network",
        idempotent: false,
        input_schema: {
          type: "array",
          prefixItems: [
            { title: "url", type: "string", maxLength: 8_192 },
            {
              title: "options",
              type: "object",
              additionalProperties: false,
              properties: {
                method: { type: "string" },
                headers: { type: "object", additionalProperties: { type: "string" } },
                body: { type: "string" },
                encoding: { type: "string", enum: ["utf-8", "base64"] },
              },
            },
          ],
          minItems: 1,
          maxItems: 2,
        },
        output_schema: {
          type: "object",
          properties: {
            status: { type: "integer" },
            url: { type: "string" },
            headers: { type: "object", additionalProperties: { type: "string" } },
            body: { type: "string" },
          },
          required: ["status", "url", "headers", "body"],
        },
        limits: {
          timeout_ms: timeoutMs + 1_000,
          max_response_bytes: Math.ceil(maxBytes * 1.4) + 65_536,
        },
      },
      async (context) => {
        const given = (context.args[1] ?? {}) as {
          method?: string;
          headers?: Record<string, string>;
          body?: string;
          encoding?: string;
        };
        const method = (given.method ?? "GET").toUpperCase();
        if (!methods.has(method))
          fail(
            "HTTP_METHOD_NOT_ALLOWED",
            `Method ${method} is not allowed (allowed: ${[...methods].join(", ")}).`,
          );
        const headers: Record<string, string> = {};
        for (const [name, value] of Object.entries(given.headers ?? {})) {
          if (!HEADER_NAME.test(name) || REFUSED_HEADERS.has(name.toLowerCase()))
            fail("HTTP_HEADER_NOT_ALLOWED", `Header '${name}' cannot be set.`);
          headers[name] = value;
        }
        let url: URL;
        try {
          url = new URL(context.args[0] as string);
        } catch {
          fail("HTTP_URL_NOT_ALLOWED", `'${String(context.args[0])}' is not a URL.`);
        }
        const signal = AbortSignal.any([
          AbortSignal.timeout(timeoutMs),
          ...(context.signal ? [context.signal] : []),
        ]);
        for (let redirects = 0; ; redirects++) {
          checkTarget(url);
          let response: Awaited<ReturnType<typeof request>>;
          try {
            response = await request(url, {
              method: method as "GET",
              headers,
              ...(given.body !== undefined && method !== "GET" && method !== "HEAD"
                ? { body: given.body }
                : {}),
              dispatcher: agent,
              signal,
            });
          } catch (error) {
            fail("HTTP_FETCH_FAILED", `${url.origin}: ${(error as Error).message}`);
          }
          const location = response.headers.location;
          if (
            response.statusCode >= 300 &&
            response.statusCode < 400 &&
            typeof location === "string"
          ) {
            await response.body.dump();
            if (redirects >= maxRedirects)
              fail("HTTP_FETCH_FAILED", `More than ${maxRedirects} redirects.`);
            url = new URL(location, url);
            continue;
          }
          const chunks: Buffer[] = [];
          let total = 0;
          try {
            for await (const chunk of response.body) {
              total += chunk.byteLength;
              if (total > maxBytes) {
                response.body.destroy();
                fail("HTTP_RESPONSE_TOO_LARGE", `The response is larger than ${maxBytes} bytes.`);
              }
              chunks.push(chunk as Buffer);
            }
          } catch (error) {
            // A body cut off by timeoutMs or a dropped connection is a failed fetch, as when the
            // headers never come; uncaught it reached the guest as a bare TOOL_ERROR.
            if (error instanceof ToolError) throw error;
            fail("HTTP_FETCH_FAILED", `${url.origin}: ${(error as Error).message}`);
          }
          const body = Buffer.concat(chunks);
          const outHeaders: Record<string, string> = {};
          for (const [name, value] of Object.entries(response.headers)) {
            if (value !== undefined)
              outHeaders[name] = Array.isArray(value) ? value.join(", ") : value;
          }
          return {
            status: response.statusCode,
            url: url.href,
            headers: outHeaders,
            body: given.encoding === "base64" ? body.toString("base64") : body.toString("utf8"),
          };
        }
      },
    ),
  ];
}

/** The plugin the server loads from configuration. Options: {@link HttpOptions}. */
export const plugin: CapabilityPlugin = {
  kind: "capabilities",
  id: "http",
  create: (options) => createHttpTools(options as HttpOptions),
};
