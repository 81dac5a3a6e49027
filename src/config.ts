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
  /** Limits of new sessions (default: seed 004's `SessionLimits::default()`). */
  defaults: SessionLimits;
  /** Highest value each limit may be asked for. */
  ceilings: SessionLimits;
  /** Language of a session when nothing says (default `python`, as seed 004). */
  defaultLanguage: Language;
  /** Backend id per language, overriding "first registered wins". */
  defaultRuntimes: Partial<Record<Language, string>>;
  /** Backend modules to load. */
  runtimes: PluginConfig[];
  /** Tool pack modules to load. */
  capabilities: PluginConfig[];
  /** pino level: `fatal`…`trace` or `silent` (default `info`; env `SANDBOX_LOG_LEVEL`). */
  logLevel: string;
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
    bodyLimitBytes: 8 * 1_048_576,
    maxSessions: 500,
    sessionIdleTtlMs: 15 * 60_000,
    maxQueuedRuns: 8,
    runRetentionMs: 10 * 60_000,
    defaults: { ...DEFAULT_SESSION_LIMITS },
    ceilings: { ...DEFAULT_CEILINGS },
    defaultLanguage: "python",
    defaultRuntimes: {},
    // QuickJS first: it stays the default for javascript and typescript.
    runtimes: [
      { module: resolve(REPOSITORY_ROOT, "runtimes/quickjs/index.ts"), options: {} },
      { module: resolve(REPOSITORY_ROOT, "runtimes/isolated-vm/index.ts"), options: {} },
    ],
    capabilities: [{ module: resolve(REPOSITORY_ROOT, "capabilities/kv/index.ts"), options: {} }],
    logLevel: "info",
  };
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
    bodyLimitBytes: { type: "integer", minimum: 1_024 },
    maxSessions: { type: "integer", minimum: 1 },
    sessionIdleTtlMs: { type: "integer", minimum: 1_000 },
    maxQueuedRuns: { type: "integer", minimum: 0 },
    runRetentionMs: { type: "integer", minimum: 0 },
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
  if (env.SANDBOX_LOG_LEVEL) config.logLevel = env.SANDBOX_LOG_LEVEL;
  for (const [name, key] of INTEGER_ENV) {
    const raw = env[name];
    if (raw === undefined || raw === "") continue;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < 0)
      throw new ConfigError(`${name} must be a non-negative integer, not '${raw}'.`);
    (config as unknown as Record<string, number>)[key] = value;
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
