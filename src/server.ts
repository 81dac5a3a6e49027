/**
 * Assembles a server from configuration: loads the plugin modules it names (backends, tool
 * packs), builds the registries, the session manager and the HTTP app.
 *
 * @module
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import {
  importableSpecifier,
  type PluginConfig,
  type ServerConfig,
  snapshotKeyBytes,
} from "./config.ts";
import { SandboxError } from "./errors.ts";
import { buildApp } from "./http/app.ts";
import { defaultRuntimeLabel } from "./http/routes/runtime.ts";
import { isPlugin, type Plugin, type PluginHost } from "./plugins.ts";
import { ArtifactStore } from "./runner/artifacts.ts";
import { ProcessRegistry } from "./runner/process-registry.ts";
import { SandboxRunnerProvider } from "./runner/sandbox-provider.ts";
import { boundedIdentifier, runtimeDiagnostic } from "./runner/summary.ts";
import { RuntimeRegistry } from "./runtime/registry.ts";
import { FsHibernationIndex } from "./session/hibernation-index.ts";
import { SessionManager } from "./session/manager.ts";
import { FsSnapshotStore } from "./snapshot/store.ts";
import { ToolRegistry } from "./tools/registry.ts";
import { WorkspaceRegistry } from "./workspace.ts";

/** A built server. */
export interface SandboxServer {
  readonly config: ServerConfig;
  readonly app: FastifyInstance;
  readonly manager: SessionManager;
  readonly runtimes: RuntimeRegistry;
  readonly tools: ToolRegistry;
  readonly workspaces: WorkspaceRegistry;
  /** The runner provider (`sandbox`) behind `/v1/runner`. */
  readonly provider: SandboxRunnerProvider;
  /** The process registry behind `/v1/processes`. */
  readonly processes: ProcessRegistry;
  /** Listens on `config.host`/`config.port`; answers the base URL. */
  listen(): Promise<string>;
  /** Stops listening, ends every session and backend. */
  close(): Promise<void>;
}

/** This package's version. */
export const VERSION = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
    version: string;
  }
).version;

async function loadPlugin(entry: PluginConfig, kind: Plugin["kind"]): Promise<Plugin> {
  let module: Record<string, unknown>;
  try {
    module = (await import(importableSpecifier(entry.module))) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`Cannot load ${kind} module '${entry.module}': ${(error as Error).message}`);
  }
  const plugin = module.plugin;
  if (!isPlugin(plugin) || plugin.kind !== kind) {
    throw new Error(`Module '${entry.module}' has no '${kind}' plugin export.`);
  }
  return plugin;
}

/** Options of {@link createServer}. */
export interface CreateServerOptions {
  /**
   * Whether hibernated sessions outlive this server through `<dataDir>/hibernated.json`
   * (taken back on start, idle sessions hibernated on close; needs `snapshotKey`). Default
   * true; a one-shot server (`sandbox run FILE`) passes false so that it never touches the
   * index of a server serving the same data dir.
   */
  keepSessions?: boolean;
}

/**
 * Builds a server (not listening yet). With a `snapshotKey` it takes back the sessions the
 * previous server on its data dir left hibernated (see {@link CreateServerOptions}).
 * @throws Error when a plugin module cannot be loaded or a default limit is above its ceiling.
 */
export async function createServer(
  config: ServerConfig,
  options: CreateServerOptions = {},
): Promise<SandboxServer> {
  const keepSessions = (options.keepSessions ?? true) && config.snapshotKey !== null;
  const runtimes = new RuntimeRegistry();
  const tools = new ToolRegistry();
  const workspaces = new WorkspaceRegistry();
  const sessionEnded = new EventEmitter().setMaxListeners(100);
  const host: PluginHost = {
    workspaces,
    onSessionDestroyed: (listener) => {
      sessionEnded.on("destroyed", listener);
    },
  };
  try {
    for (const entry of config.runtimes) {
      const plugin = await loadPlugin(entry, "runtime");
      if (plugin.kind === "runtime") runtimes.register(await plugin.create(entry.options, host));
    }
    for (const [language, id] of Object.entries(config.defaultRuntimes)) {
      runtimes.setDefault(language as keyof typeof config.defaultRuntimes, id);
    }
    for (const entry of config.capabilities) {
      const plugin = await loadPlugin(entry, "capabilities");
      if (plugin.kind === "capabilities") {
        for (const tool of await plugin.create(entry.options, host)) tools.register(tool);
      }
    }
  } catch (error) {
    await runtimes.close();
    if (error instanceof SandboxError) throw new Error(`Configuration: ${error.message}`);
    throw error;
  }
  let log: FastifyBaseLogger | undefined;
  const manager = new SessionManager({
    runtimes,
    tools,
    workspaces,
    onSessionDestroyed: (sessionId) => sessionEnded.emit("destroyed", sessionId),
    defaults: config.defaults,
    ceilings: config.ceilings,
    maxSessions: config.maxSessions,
    sessionIdleTtlMs: config.sessionIdleTtlMs,
    maxQueuedRuns: config.maxQueuedRuns,
    runRetentionMs: config.runRetentionMs,
    maxRetainedRuns: config.maxRetainedRuns,
    defaultLanguage: config.defaultLanguage,
    allowedSideEffects: config.allowedSideEffects,
    approvalTtlMs: config.approvalTtlMs,
    snapshots: {
      store: new FsSnapshotStore({
        directory: join(config.dataDir, "snapshots"),
        maxBytes: config.snapshotStoreBytes,
        ttlMs: config.snapshotTtlMs,
      }),
      key:
        config.snapshotKey === null
          ? new Uint8Array(randomBytes(32))
          : snapshotKeyBytes(config.snapshotKey),
      allowUnsigned: config.allowUnsignedSnapshots,
      bounds: { maxSnapshotBytes: config.maxSnapshotBytes },
      hibernateAfterMs: config.hibernateAfterMs,
      hibernateAboveRssBytes: config.hibernateAboveRssBytes,
      // Snapshots signed with a per-process key restore nowhere else: without a configured
      // key, hibernated sessions end with the process.
      ...(!keepSessions
        ? {}
        : {
            hibernationIndex: new FsHibernationIndex(join(config.dataDir, "hibernated.json")),
            onHibernationIndexError: (error: unknown) =>
              log?.warn({ err: error }, "the hibernation index could not be written"),
            hibernateOnCloseMs: config.hibernateOnShutdownMs,
          }),
    },
  });
  const processes = new ProcessRegistry();
  const artifacts = ArtifactStore.filesystem(join(config.dataDir, "artifacts"));
  const provider = new SandboxRunnerProvider({
    manager,
    processes,
    artifacts,
    hostRoots: config.runnerRoots,
    artifactUrl: (id) => `${config.publicUrl ?? ""}/v1/artifacts/${id}`,
  });
  sessionEnded.on("destroyed", (sessionId: string) => provider.forget(sessionId));
  // Artifacts expire with their TTL; the store collects them hourly.
  const artifactGc = setInterval(() => void artifacts.gc().catch(() => 0), 3_600_000);
  artifactGc.unref();
  const runtimeId = config.runtimeId ?? boundedIdentifier("sandbox", hostname());
  const app = await buildApp({
    runner: {
      provider,
      processes,
      artifacts,
      fileBodyLimitBytes: Math.max(config.bodyLimitBytes, 64 * 1_048_576),
      runtimeId,
      label: defaultRuntimeLabel(),
      maxSessions: config.maxSessions,
      diagnostics: () => [
        ...(config.snapshotKey === null
          ? [
              runtimeDiagnostic(
                "runtime.snapshot_key_missing",
                "warning",
                "SANDBOX_SNAPSHOT_KEY is not set: snapshots restore only in this process.",
              ),
            ]
          : []),
        ...(config.runnerRoots.length === 0
          ? [
              runtimeDiagnostic(
                "runtime.runner_roots_missing",
                "info",
                "No runner host roots: manifests cannot copy host files (SANDBOX_RUNNER_ROOTS).",
              ),
            ]
          : []),
      ],
    },
    manager,
    runtimes,
    tools,
    token: config.token,
    adminToken: config.adminToken,
    bodyLimitBytes: config.bodyLimitBytes,
    logger: config.logLevel === "silent" ? false : { level: config.logLevel },
    version: VERSION,
    snapshotBodyLimitBytes: config.maxSnapshotBytes,
  });
  log = app.log;
  if (config.snapshotKey === null) {
    app.log.warn(
      "SANDBOX_SNAPSHOT_KEY is not set: snapshots are signed with a random key of this process and restore nowhere else; sessions end with the process.",
    );
  }
  try {
    // Sessions the previous server on this data dir left hibernated wake on their next use.
    const resumed = await manager.resumeHibernated();
    if (resumed.resumed + resumed.expired + resumed.missing + resumed.rejected > 0) {
      app.log.info(resumed, "took back hibernated sessions");
    }
  } catch (error) {
    app.log.error(
      { err: error },
      "the hibernation index could not be read: sessions of the previous server are lost",
    );
  }
  let closed = false;
  return {
    config,
    app,
    manager,
    runtimes,
    tools,
    workspaces,
    provider,
    processes,
    async listen() {
      const address = await app.listen({ host: config.host, port: config.port });
      return address.replace("[::1]", "localhost");
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(artifactGc);
      await processes.stopAll("the server is shutting down").catch(() => []);
      await app.close();
      await manager.close();
      await runtimes.close();
    },
  };
}
