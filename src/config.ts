/**
 * Server configuration: embedded defaults, overlaid by an optional JSON file
 * (`SANDBOX_CONFIG=path`), overlaid by environment variables. docs/configuration.md lists
 * every field and variable.
 *
 * Plugin modules (backends, tool packs) are named by specifier: a path relative to the
 * configuration file (or, for the defaults, to this repository), or a package name.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Ajv } from "ajv";
import { sessionLimitsInputSchema } from "./contract/schemas.ts";
import {
  DEFAULT_SESSION_LIMITS,
  LANGUAGES,
  type Language,
  type SessionLimits,
  SIDE_EFFECTS,
  type SideEffect,
} from "./contract/types.ts";
import { describeSchemaErrors } from "./json-schema.ts";

/** A plugin module to load, and the options its `plugin.create` receives. */
export interface PluginConfig {
  /** Module specifier: relative path (to the config file), absolute path, or package name. */
  module: string;
  options: Record<string, unknown>;
}

/** Everything the server is configured with. Times in ms, sizes in bytes. */
export interface ServerConfig {
  /** Address to listen on (default `127.0.0.1`; env `HOST`). */
  host: string;
  /** Port (default 8787; env `PORT`; 0 picks a free one). */
  port: number;
  /** Bearer token every route but health needs; `null` means none (env `SANDBOX_TOKEN`). */
  token: string | null;
  /**
   * Token of the admin routes (registering remote tools); `null` disables them
   * (env `SANDBOX_ADMIN_TOKEN`). It is accepted wherever `token` is.
   */
  adminToken: string | null;
  /** Largest request body (default 8 MiB; env `SANDBOX_BODY_LIMIT_BYTES`). */
  bodyLimitBytes: number;
  /** Most sessions at once (default 500; env `SANDBOX_MAX_SESSIONS`). */
  maxSessions: number;
  /** Idle time before a session is destroyed (default 15 min; env `SANDBOX_SESSION_TTL_MS`). */
  sessionIdleTtlMs: number;
  /** Runs that may wait behind a session's current run (default 8; env `SANDBOX_MAX_QUEUED_RUNS`). */
  maxQueuedRuns: number;
  /** How long a finished run can be fetched by id (default 10 min; env `SANDBOX_RUN_RETENTION_MS`). */
  runRetentionMs: number;
  /** Most finished runs kept for fetching; oldest forgotten first (default 10,000; env `SANDBOX_MAX_RETAINED_RUNS`). */
  maxRetainedRuns: number;
  /** Limits of new sessions (default: seed 004's `SessionLimits::default()`). */
  defaults: SessionLimits;
  /** Highest value each limit may be asked for. */
  ceilings: SessionLimits;
  /** Language of a session when nothing says (default `python`, as seed 004). */
  defaultLanguage: Language;
  /** Side-effect classes any session's code may use (default all; env `SANDBOX_ALLOWED_SIDE_EFFECTS`, comma-separated). */
  allowedSideEffects: SideEffect[];
  /** Time a tool call waits for a person's approval before it is denied (default 10 min; env `SANDBOX_APPROVAL_TTL_MS`). */
  approvalTtlMs: number;
  /** Backend id per language, overriding "first registered wins". */
  defaultRuntimes: Partial<Record<Language, string>>;
  /** Backend modules to load. */
  runtimes: PluginConfig[];
  /** Tool pack modules to load. */
  capabilities: PluginConfig[];
  /** pino level: `fatal`…`trace` or `silent` (default `info`; env `SANDBOX_LOG_LEVEL`). */
  logLevel: string;
  /**
   * Directory of the server's data: snapshots under `snapshots/` (default `.data` in the
   * working directory; env `SANDBOX_DATA_DIR`; in a file, relative to the file).
   */
  dataDir: string;
  /**
   * Key snapshots are signed (HMAC-SHA256) and checked with; hosts that exchange snapshots
   * share it (env `SANDBOX_SNAPSHOT_KEY`: 64 hex digits, or any text of 32+ characters).
   * `null`: a random key per process, so snapshots restore only in the process that took them.
   */
  snapshotKey: string | null;
  /** Restore unsigned snapshots — insecure (default false; env `SANDBOX_ALLOW_UNSIGNED_SNAPSHOTS=1`). */
  allowUnsignedSnapshots: boolean;
  /** Largest snapshot written, uploaded or restored (default 128 MiB; env `SANDBOX_MAX_SNAPSHOT_BYTES`). */
  maxSnapshotBytes: number;
  /** Most bytes the snapshot store holds (default 4 GiB; env `SANDBOX_SNAPSHOT_STORE_BYTES`). */
  snapshotStoreBytes: number;
  /** Age at which stored snapshots are collected (default 7 days; env `SANDBOX_SNAPSHOT_TTL_MS`). */
  snapshotTtlMs: number;
  /**
   * Idle time after which a session hibernates to the snapshot store; `null` never
   * (default 5 min; env `SANDBOX_HIBERNATE_AFTER_MS`, `off` for never). With hibernation on,
   * reaching `maxSessions` hibernates the least recently used idle session instead of refusing.
   */
  hibernateAfterMs: number | null;
  /** RSS of the server process above which idle sessions hibernate; `null` never (default; env `SANDBOX_HIBERNATE_ABOVE_RSS_BYTES`). */
  hibernateAboveRssBytes: number | null;
  /**
   * Time the server spends, when it shuts down, hibernating its idle sessions (most recently
   * used first) so that a server started next on the same `dataDir` with the same
   * `snapshotKey` takes them back; 0 never (default 10 s; env
   * `SANDBOX_HIBERNATE_ON_SHUTDOWN_MS`). Without `snapshotKey` sessions never outlive the
   * process (their snapshots would not verify in the next one).
   */
  hibernateOnShutdownMs: number;
  /**
   * Host directories runner manifests may copy files from (absolute; default none; env
   * `SANDBOX_RUNNER_ROOTS`, colon-separated; in a file, relative to the file).
   */
  runnerRoots: string[];
  /**
   * Base URL clients reach this server at, for artifact URLs (default none: URLs are
   * root-relative paths; env `SANDBOX_PUBLIC_URL`).
   */
  publicUrl: string | null;
  /**
   * This server's id as a worker runtime (`GET /v1/runtime`; default `sandbox-<hostname>`,
   * made a valid identifier; env `SANDBOX_RUNTIME_ID`).
   */
  runtimeId: string | null;
}

const REPOSITORY_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** Ceilings when none are configured: generous, but bounded. */
export const DEFAULT_CEILINGS: Readonly<SessionLimits> = Object.freeze({
  memory_mb: 512,
  cpu_ms: 60_000,
  wall_ms: 300_000,
  max_stdout_bytes: 16_777_216,
  max_external_calls: 10_000,
  max_stack_depth: 10_000,
});

/** The embedded defaults: everything the server needs with no file and no environment. */
export function defaultConfig(): ServerConfig {
  return {
    host: "127.0.0.1",
    port: 8787,
    token: null,
    adminToken: null,
    bodyLimitBytes: 8 * 1_048_576,
    maxSessions: 500,
    sessionIdleTtlMs: 15 * 60_000,
    maxQueuedRuns: 8,
    runRetentionMs: 10 * 60_000,
    maxRetainedRuns: 10_000,
    defaults: { ...DEFAULT_SESSION_LIMITS },
    ceilings: { ...DEFAULT_CEILINGS },
    defaultLanguage: "python",
    allowedSideEffects: [...SIDE_EFFECTS],
    approvalTtlMs: 10 * 60_000,
    defaultRuntimes: {},
    // QuickJS first: it stays the default for javascript and typescript.
    runtimes: [
      { module: resolve(REPOSITORY_ROOT, "runtimes/quickjs/index.ts"), options: {} },
      { module: resolve(REPOSITORY_ROOT, "runtimes/isolated-vm/index.ts"), options: {} },
      { module: resolve(REPOSITORY_ROOT, "runtimes/pyodide/index.ts"), options: {} },
    ],
    capabilities: [{ module: resolve(REPOSITORY_ROOT, "capabilities/kv/index.ts"), options: {} }],
    logLevel: "info",
    dataDir: resolve(".data"),
    snapshotKey: null,
    allowUnsignedSnapshots: false,
    maxSnapshotBytes: 128 * 1_048_576,
    snapshotStoreBytes: 4 * 1_073_741_824,
    snapshotTtlMs: 7 * 86_400_000,
    hibernateAfterMs: 5 * 60_000,
    hibernateAboveRssBytes: null,
    hibernateOnShutdownMs: 10_000,
    runnerRoots: [],
    publicUrl: null,
    runtimeId: null,
  };
}

/**
 * The snapshot key's bytes: 64 hex digits are taken as 32 bytes, other text as its UTF-8.
 * @throws ConfigError for a key shorter than 32 characters.
 */
export function snapshotKeyBytes(key: string): Uint8Array {
  if (/^[0-9a-fA-F]{64}$/.test(key)) return new Uint8Array(Buffer.from(key, "hex"));
  if (key.length < 32) {
    throw new ConfigError(
      "SANDBOX_SNAPSHOT_KEY must be 64 hex digits or at least 32 characters of text.",
    );
  }
  return new Uint8Array(Buffer.from(key, "utf8"));
}

const pluginSchema = {
  type: "object",
  additionalProperties: false,
  required: ["module"],
  properties: { module: { type: "string", minLength: 1 }, options: { type: "object" } },
} as const;

const limitsSchema = { ...sessionLimitsInputSchema, $id: undefined } as const;

/** JSON Schema of the configuration file. */
export const configFileSchema = {
  type: "object",
  additionalProperties: false,
  properties: {
    host: { type: "string" },
    port: { type: "integer", minimum: 0, maximum: 65_535 },
    token: { type: ["string", "null"] },
    adminToken: { type: ["string", "null"] },
    allowedSideEffects: {
      type: "array",
      uniqueItems: true,
      items: { type: "string", enum: [...SIDE_EFFECTS] },
    },
    approvalTtlMs: { type: "integer", minimum: 1_000 },
    bodyLimitBytes: { type: "integer", minimum: 1_024 },
    maxSessions: { type: "integer", minimum: 1 },
    sessionIdleTtlMs: { type: "integer", minimum: 1_000 },
    maxQueuedRuns: { type: "integer", minimum: 0 },
    runRetentionMs: { type: "integer", minimum: 0 },
    maxRetainedRuns: { type: "integer", minimum: 0 },
    defaults: limitsSchema,
    ceilings: limitsSchema,
    defaultLanguage: { type: "string", enum: [...LANGUAGES] },
    defaultRuntimes: {
      type: "object",
      additionalProperties: false,
      properties: Object.fromEntries(LANGUAGES.map((language) => [language, { type: "string" }])),
    },
    runtimes: { type: "array", items: pluginSchema },
    capabilities: { type: "array", items: pluginSchema },
    logLevel: {
      type: "string",
      enum: ["fatal", "error", "warn", "info", "debug", "trace", "silent"],
    },
    dataDir: { type: "string", minLength: 1 },
    snapshotKey: { type: ["string", "null"] },
    allowUnsignedSnapshots: { type: "boolean" },
    maxSnapshotBytes: { type: "integer", minimum: 1_024 },
    snapshotStoreBytes: { type: "integer", minimum: 1_024 },
    snapshotTtlMs: { type: "integer", minimum: 1_000 },
    hibernateAfterMs: { type: ["integer", "null"], minimum: 1_000 },
    hibernateAboveRssBytes: { type: ["integer", "null"], minimum: 1_048_576 },
    hibernateOnShutdownMs: { type: "integer", minimum: 0, maximum: 600_000 },
    runnerRoots: { type: "array", items: { type: "string", minLength: 1 } },
    publicUrl: { type: ["string", "null"], pattern: "^https?://" },
    runtimeId: { type: ["string", "null"], pattern: "^[A-Za-z0-9_:-]{1,120}$" },
  },
} as const;

/** A configuration problem: the message says which setting and why. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

const INTEGER_ENV: readonly [string, keyof ServerConfig][] = [
  ["PORT", "port"],
  ["SANDBOX_BODY_LIMIT_BYTES", "bodyLimitBytes"],
  ["SANDBOX_MAX_SESSIONS", "maxSessions"],
  ["SANDBOX_SESSION_TTL_MS", "sessionIdleTtlMs"],
  ["SANDBOX_MAX_QUEUED_RUNS", "maxQueuedRuns"],
  ["SANDBOX_RUN_RETENTION_MS", "runRetentionMs"],
  ["SANDBOX_MAX_RETAINED_RUNS", "maxRetainedRuns"],
  ["SANDBOX_APPROVAL_TTL_MS", "approvalTtlMs"],
  ["SANDBOX_MAX_SNAPSHOT_BYTES", "maxSnapshotBytes"],
  ["SANDBOX_SNAPSHOT_STORE_BYTES", "snapshotStoreBytes"],
  ["SANDBOX_SNAPSHOT_TTL_MS", "snapshotTtlMs"],
  ["SANDBOX_HIBERNATE_ABOVE_RSS_BYTES", "hibernateAboveRssBytes"],
  ["SANDBOX_HIBERNATE_ON_SHUTDOWN_MS", "hibernateOnShutdownMs"],
];

/**
 * Loads the configuration.
 * @throws ConfigError for an unreadable or invalid file or a malformed variable.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const config = defaultConfig();
  const file = env.SANDBOX_CONFIG;
  if (file) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, "utf8"));
    } catch (error) {
      throw new ConfigError(`SANDBOX_CONFIG ${file}: ${(error as Error).message}`);
    }
    const validate = new Ajv({ allErrors: true, strict: false }).compile(configFileSchema);
    if (!validate(parsed)) {
      throw new ConfigError(`SANDBOX_CONFIG ${file}: ${describeSchemaErrors(validate.errors)}`);
    }
    const base = dirname(resolve(file));
    const input = parsed as Partial<ServerConfig> & {
      runtimes?: { module: string; options?: Record<string, unknown> }[];
      capabilities?: { module: string; options?: Record<string, unknown> }[];
    };
    Object.assign(config, {
      ...input,
      dataDir: input.dataDir === undefined ? config.dataDir : resolve(base, input.dataDir),
      runnerRoots: (input.runnerRoots ?? config.runnerRoots).map((root) => resolve(base, root)),
      defaults: { ...config.defaults, ...input.defaults },
      ceilings: { ...config.ceilings, ...input.ceilings },
      runtimes:
        input.runtimes?.map((p) => ({
          module: resolveSpecifier(p.module, base),
          options: p.options ?? {},
        })) ?? config.runtimes,
      capabilities:
        input.capabilities?.map((p) => ({
          module: resolveSpecifier(p.module, base),
          options: p.options ?? {},
        })) ?? config.capabilities,
    });
  }
  if (env.HOST) config.host = env.HOST;
  if (env.SANDBOX_TOKEN !== undefined)
    config.token = env.SANDBOX_TOKEN === "" ? null : env.SANDBOX_TOKEN;
  if (env.SANDBOX_ADMIN_TOKEN !== undefined)
    config.adminToken = env.SANDBOX_ADMIN_TOKEN === "" ? null : env.SANDBOX_ADMIN_TOKEN;
  if (env.SANDBOX_LOG_LEVEL) config.logLevel = env.SANDBOX_LOG_LEVEL;
  if (env.SANDBOX_ALLOWED_SIDE_EFFECTS !== undefined) {
    const listed = env.SANDBOX_ALLOWED_SIDE_EFFECTS.split(",")
      .map((item) => item.trim())
      .filter(Boolean);
    const unknown = listed.filter((item) => !SIDE_EFFECTS.includes(item as SideEffect));
    if (unknown.length > 0) {
      throw new ConfigError(
        `SANDBOX_ALLOWED_SIDE_EFFECTS: unknown side effect(s) ${unknown.join(", ")} (known: ${SIDE_EFFECTS.join(", ")}).`,
      );
    }
    config.allowedSideEffects = listed as SideEffect[];
  }
  if (env.SANDBOX_DATA_DIR) config.dataDir = resolve(env.SANDBOX_DATA_DIR);
  if (env.SANDBOX_RUNNER_ROOTS !== undefined) {
    config.runnerRoots = env.SANDBOX_RUNNER_ROOTS.split(":")
      .filter(Boolean)
      .map((root) => resolve(root));
  }
  if (env.SANDBOX_PUBLIC_URL !== undefined) {
    const url = env.SANDBOX_PUBLIC_URL.replace(/\/+$/, "");
    if (url !== "" && !/^https?:\/\/[^/\s]+/.test(url)) {
      throw new ConfigError(
        `SANDBOX_PUBLIC_URL must be an http(s) URL, not '${env.SANDBOX_PUBLIC_URL}'.`,
      );
    }
    config.publicUrl = url === "" ? null : url;
  }
  if (env.SANDBOX_RUNTIME_ID !== undefined) {
    if (!/^[A-Za-z0-9_:-]{1,120}$/.test(env.SANDBOX_RUNTIME_ID)) {
      throw new ConfigError(
        "SANDBOX_RUNTIME_ID must be 1-120 ASCII letters, digits, '-', '_' or ':' (seed 001's identifiers).",
      );
    }
    config.runtimeId = env.SANDBOX_RUNTIME_ID;
  }
  if (env.SANDBOX_SNAPSHOT_KEY !== undefined) {
    config.snapshotKey = env.SANDBOX_SNAPSHOT_KEY === "" ? null : env.SANDBOX_SNAPSHOT_KEY;
  }
  if (config.snapshotKey !== null) snapshotKeyBytes(config.snapshotKey);
  if (
    env.SANDBOX_ALLOW_UNSIGNED_SNAPSHOTS !== undefined &&
    env.SANDBOX_ALLOW_UNSIGNED_SNAPSHOTS !== ""
  ) {
    const raw = env.SANDBOX_ALLOW_UNSIGNED_SNAPSHOTS;
    if (!["0", "1", "true", "false"].includes(raw)) {
      throw new ConfigError(`SANDBOX_ALLOW_UNSIGNED_SNAPSHOTS must be 1 or 0, not '${raw}'.`);
    }
    config.allowUnsignedSnapshots = raw === "1" || raw === "true";
  }
  const hibernate = env.SANDBOX_HIBERNATE_AFTER_MS;
  if (hibernate !== undefined && hibernate !== "") {
    if (hibernate === "off") config.hibernateAfterMs = null;
    else {
      const value = Number(hibernate);
      if (!Number.isInteger(value) || value < 1_000) {
        throw new ConfigError(
          `SANDBOX_HIBERNATE_AFTER_MS must be 'off' or an integer of at least 1000, not '${hibernate}'.`,
        );
      }
      config.hibernateAfterMs = value;
    }
  }
  for (const [name, key] of INTEGER_ENV) {
    const raw = env[name];
    if (raw === undefined || raw === "") continue;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < 0)
      throw new ConfigError(`${name} must be a non-negative integer, not '${raw}'.`);
    (config as unknown as Record<string, number>)[key] = value;
  }
  if (config.snapshotTtlMs < config.sessionIdleTtlMs) {
    throw new ConfigError(
      `snapshotTtlMs (${config.snapshotTtlMs}) must be at least sessionIdleTtlMs (${config.sessionIdleTtlMs}): the store must not collect a hibernated session's snapshot before the session expires.`,
    );
  }
  return config;
}

/** Resolves a plugin specifier: relative paths against `base`, others as given. */
export function resolveSpecifier(specifier: string, base: string): string {
  if (specifier.startsWith(".") || isAbsolute(specifier)) return resolve(base, specifier);
  return specifier;
}

/** Turns a resolved specifier into something `import()` takes. */
export function importableSpecifier(specifier: string): string {
  return isAbsolute(specifier) ? pathToFileURL(specifier).href : specifier;
}
