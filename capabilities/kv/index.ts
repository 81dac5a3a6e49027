/**
 * `kv`: a key-value store guest code can use across runs — `kv_get`, `kv_set`, `kv_delete`,
 * `kv_list` — held in the server's memory (it does not survive a restart).
 *
 * Each session has its own namespace by default (`scope: "session"`), so sessions cannot
 * read each other's keys; `scope: "global"` shares one namespace. Keys are strings of 1–256
 * characters; values are any JSON. Quotas per namespace: `maxKeys` (default 1,000) and
 * `maxBytes` of JSON values (default 4 MiB); past them a write fails with
 * `KV_QUOTA_EXCEEDED`. `kv_set` takes an optional time-to-live in seconds, positionally
 * (JavaScript: `kv_set("k", v, 60)`) or as a keyword (Python: `kv_set("k", v, ttl_s=60)`).
 *
 * A capability author can read this file as the model of a tool pack: capabilities with
 * schemas, handlers that throw {@link ToolError} with codes of their own, and a `plugin`
 * export the server loads from configuration.
 *
 * @module
 */
import {
  type CapabilityPlugin,
  createSyncTool,
  type JsonValue,
  type PluginHost,
  type RegisteredTool,
  type ToolCallContext,
  ToolError,
} from "../../src/index.ts";

/** Options of {@link createKvTools}. */
export interface KvOptions {
  /** `"session"` (default): a namespace per session; `"global"`: one shared namespace. */
  scope?: "session" | "global";
  /** Keys per namespace (default 1,000). */
  maxKeys?: number;
  /** Bytes of JSON values per namespace (default 4 MiB). */
  maxBytes?: number;
  /** Clock in ms, for tests (default `Date.now`). */
  now?: () => number;
}

interface Entry {
  value: JsonValue;
  bytes: number;
  /** Epoch ms after which the entry is gone, or Infinity. */
  expiresAt: number;
}

const KEY_SCHEMA = { title: "key", type: "string", minLength: 1, maxLength: 256 } as const;

/** An in-memory store shared by the four tools of one pack instance. */
export class KvStore {
  readonly #namespaces = new Map<string, Map<string, Entry>>();
  readonly #bytes = new Map<string, number>();
  readonly #options: Required<KvOptions>;

  constructor(options: KvOptions = {}) {
    this.#options = {
      scope: options.scope ?? "session",
      maxKeys: options.maxKeys ?? 1_000,
      maxBytes: options.maxBytes ?? 4 * 1_048_576,
      now: options.now ?? Date.now,
    };
  }

  /** The namespace a call works in. */
  namespaceOf(context: ToolCallContext): string {
    return this.#options.scope === "global" ? "" : (context.session_id ?? "");
  }

  get(namespace: string, key: string): JsonValue {
    const entry = this.#live(namespace, key);
    return entry ? entry.value : null;
  }

  set(namespace: string, key: string, value: JsonValue, ttlSeconds: number | null): void {
    const entries = this.#entries(namespace);
    const bytes = Buffer.byteLength(JSON.stringify(value));
    const previous = this.#live(namespace, key);
    const used = (this.#bytes.get(namespace) ?? 0) - (previous?.bytes ?? 0);
    if (!previous && entries.size >= this.#options.maxKeys) {
      throw new ToolError(
        "KV_QUOTA_EXCEEDED",
        `The store holds its maximum of ${this.#options.maxKeys} keys.`,
      );
    }
    if (used + bytes > this.#options.maxBytes) {
      throw new ToolError(
        "KV_QUOTA_EXCEEDED",
        `Storing ${bytes} bytes would pass the store's ${this.#options.maxBytes}-byte quota.`,
      );
    }
    const expiresAt =
      ttlSeconds === null ? Number.POSITIVE_INFINITY : this.#options.now() + ttlSeconds * 1000;
    entries.set(key, { value, bytes, expiresAt });
    this.#bytes.set(namespace, used + bytes);
  }

  delete(namespace: string, key: string): boolean {
    const entry = this.#live(namespace, key);
    if (!entry) return false;
    this.#entries(namespace).delete(key);
    this.#bytes.set(namespace, (this.#bytes.get(namespace) ?? 0) - entry.bytes);
    return true;
  }

  /** Forgets a namespace (its session ended). */
  drop(namespace: string): void {
    this.#namespaces.delete(namespace);
    this.#bytes.delete(namespace);
  }

  list(namespace: string, prefix: string): string[] {
    const keys: string[] = [];
    for (const key of [...this.#entries(namespace).keys()]) {
      if (key.startsWith(prefix) && this.#live(namespace, key)) keys.push(key);
    }
    return keys.sort();
  }

  #entries(namespace: string): Map<string, Entry> {
    let entries = this.#namespaces.get(namespace);
    if (!entries) {
      entries = new Map();
      this.#namespaces.set(namespace, entries);
    }
    return entries;
  }

  #live(namespace: string, key: string): Entry | undefined {
    const entries = this.#entries(namespace);
    const entry = entries.get(key);
    if (entry && entry.expiresAt <= this.#options.now()) {
      entries.delete(key);
      this.#bytes.set(namespace, (this.#bytes.get(namespace) ?? 0) - entry.bytes);
      return undefined;
    }
    return entry;
  }
}

/** Builds the four kv tools over one store; with a `host`, a session's keys go when it ends. */
export function createKvTools(options: KvOptions = {}, host?: PluginHost): RegisteredTool[] {
  const store = new KvStore(options);
  if ((options.scope ?? "session") === "session")
    host?.onSessionDestroyed((sessionId) => store.drop(sessionId));
  const key = (context: ToolCallContext) => context.args[0] as string;
  return [
    createSyncTool(
      {
        name: "kv_get",
        description: "Returns the JSON value stored under a key, or null when there is none.",
        side_effect: "read",
        input_schema: { type: "array", prefixItems: [KEY_SCHEMA], minItems: 1, maxItems: 1 },
        output_schema: {},
      },
      (context) => store.get(store.namespaceOf(context), key(context)),
    ),
    createSyncTool(
      {
        name: "kv_set",
        description:
          "Stores a JSON value under a key, replacing what was there; an optional ttl_s (seconds) makes it expire. Returns true.",
        side_effect: "write",
        idempotent: true,
        input_schema: {
          type: "array",
          prefixItems: [
            KEY_SCHEMA,
            { title: "value" },
            { title: "ttl_s", type: ["number", "null"], exclusiveMinimum: 0 },
          ],
          minItems: 2,
          maxItems: 3,
        },
        kwargs_schema: {
          type: "object",
          properties: { ttl_s: { type: ["number", "null"], exclusiveMinimum: 0 } },
          additionalProperties: false,
        },
        output_schema: { const: true },
      },
      (context) => {
        const positional = context.args[2];
        const keyword = context.kwargs.ttl_s;
        if (typeof positional === "number" && typeof keyword === "number") {
          throw new ToolError("KV_BAD_TTL", "Give ttl_s once: positionally or as a keyword.");
        }
        const ttl =
          typeof positional === "number"
            ? positional
            : typeof keyword === "number"
              ? keyword
              : null;
        store.set(store.namespaceOf(context), key(context), context.args[1] ?? null, ttl);
        return true;
      },
    ),
    createSyncTool(
      {
        name: "kv_delete",
        description: "Deletes a key; returns whether it existed.",
        side_effect: "write",
        input_schema: { type: "array", prefixItems: [KEY_SCHEMA], minItems: 1, maxItems: 1 },
        output_schema: { type: "boolean" },
      },
      (context) => store.delete(store.namespaceOf(context), key(context)),
    ),
    createSyncTool(
      {
        name: "kv_list",
        description: "Lists the keys (sorted) that start with an optional prefix.",
        side_effect: "read",
        input_schema: {
          type: "array",
          prefixItems: [{ title: "prefix", type: "string", maxLength: 256 }],
          maxItems: 1,
        },
        output_schema: { type: "array", items: { type: "string" } },
      },
      (context) =>
        store.list(store.namespaceOf(context), (context.args[0] as string | undefined) ?? ""),
    ),
  ];
}

/** The plugin the server loads from configuration. Options: {@link KvOptions} (without `now`). */
export const plugin: CapabilityPlugin = {
  kind: "capabilities",
  id: "kv",
  create: (options, host) => createKvTools(options as KvOptions, host),
};
