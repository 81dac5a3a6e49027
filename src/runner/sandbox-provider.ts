/**
 * The `sandbox` runner provider (seed 000 `RemoteRunnerProvider`): runner sessions backed by
 * sandbox sessions, for a worker runtime's remote runner.
 *
 * Capabilities are what is real here: commands, file reads and writes, snapshots,
 * cancellation and artifact export; no port preview (sessions have no network) and no mounts
 * (a manifest's entries are copied in from configured host roots instead).
 *
 * A destination's `config` chooses the session (all optional):
 * `{"language": "python" | "javascript" | "typescript", "runtime": "<backend id>",
 *   "limits": {SessionLimits…}, "allowed_side_effects": [...]}` — default: the server's default
 * language and backend, and its default limits.
 *
 * @module
 */
import { randomUUID } from "node:crypto";
import { sessionLimitsInputSchema } from "../contract/schemas.ts";
import {
  LANGUAGES,
  type Language,
  type SessionLimits,
  SIDE_EFFECTS,
  type SideEffect,
} from "../contract/types.ts";
import { isSandboxError, SandboxError } from "../errors.ts";
import { compileSchema, describeSchemaErrors } from "../json-schema.ts";
import { copyManifest, resolveManifestSource } from "./manifest.ts";
import {
  type RunnerContext,
  SANDBOX_PROVIDER_ID,
  SandboxRunnerSession,
} from "./sandbox-session.ts";
import {
  DEFAULT_RUNNER_MOUNT_CAPABILITIES,
  type RemoteRunnerProvider,
  type RunnerCapabilities,
  type RunnerDestination,
  type RunnerSessionState,
} from "./types.ts";

/** Options of {@link SandboxRunnerProvider}. */
export interface SandboxRunnerProviderOptions extends RunnerContext {
  /** Host directories manifests may copy from (absolute paths); none by default. */
  hostRoots: readonly string[];
}

/** A destination's `config`, as this provider reads it. */
export interface SandboxDestinationConfig {
  language?: Language;
  runtime?: string;
  limits?: Partial<SessionLimits>;
  allowed_side_effects?: SideEffect[];
}

const validateConfig = compileSchema({
  type: ["object", "null"],
  additionalProperties: false,
  properties: {
    language: { type: "string", enum: [...LANGUAGES] },
    runtime: { type: "string", minLength: 1, maxLength: 200 },
    limits: { ...sessionLimitsInputSchema, $id: undefined },
    allowed_side_effects: {
      type: "array",
      uniqueItems: true,
      items: { type: "string", enum: [...SIDE_EFFECTS] },
    },
  },
});

function invalid(message: string): SandboxError {
  return new SandboxError("INVALID_DESTINATION", message);
}

/** See the module comment. */
export class SandboxRunnerProvider implements RemoteRunnerProvider {
  readonly #options: SandboxRunnerProviderOptions;
  readonly #sessions = new Map<string, SandboxRunnerSession>();

  constructor(options: SandboxRunnerProviderOptions) {
    this.#options = options;
  }

  id(): string {
    return SANDBOX_PROVIDER_ID;
  }

  capabilities(): RunnerCapabilities {
    return {
      command_exec: true,
      file_read: true,
      file_write: true,
      port_preview: false,
      snapshots: true,
      cancellation: true,
      artifact_export: true,
      // No object-store mounts: manifests copy files in from host roots instead.
      mounts: { ...DEFAULT_RUNNER_MOUNT_CAPABILITIES },
    };
  }

  setupHint(): string | null {
    return this.#options.hostRoots.length === 0
      ? "Manifests cannot copy host files until runner host roots are configured (SANDBOX_RUNNER_ROOTS, colon-separated absolute paths)."
      : null;
  }

  /**
   * Checks that this provider can serve `destination`.
   * @throws SandboxError `INVALID_DESTINATION` naming what is wrong; `UNKNOWN_RUNTIME`,
   *   `UNSUPPORTED_LANGUAGE`, `LIMIT_EXCEEDS_CEILING` for a config the server cannot honour.
   */
  async validateDestination(destination: RunnerDestination): Promise<void> {
    this.#config(destination);
    for (const entry of destination.default_manifest.entries) {
      await resolveManifestSource(entry.source, this.#options.hostRoots);
    }
  }

  #config(destination: RunnerDestination): SandboxDestinationConfig {
    if (destination.provider_id !== SANDBOX_PROVIDER_ID) {
      throw invalid(
        `Destination '${destination.id}' is for provider '${destination.provider_id}', not '${SANDBOX_PROVIDER_ID}'.`,
      );
    }
    if (!validateConfig(destination.config)) {
      throw invalid(
        `Destination '${destination.id}' config ${describeSchemaErrors(validateConfig.errors)}.`,
      );
    }
    if (destination.default_manifest.mounts.length > 0) {
      throw invalid(
        `Provider '${SANDBOX_PROVIDER_ID}' supports no mounts (capabilities.mounts are all false); copy files with manifest entries instead.`,
      );
    }
    return (destination.config ?? {}) as SandboxDestinationConfig;
  }

  /**
   * Creates a runner session: a sandbox session as the destination's config says, with the
   * manifest's entries copied into its workspace. Nothing remains when it fails.
   */
  async createSession(destination: RunnerDestination): Promise<SandboxRunnerSession> {
    const config = this.#config(destination);
    const manager = this.#options.manager;
    const sessionId = `runner-${randomUUID()}`;
    const info = await manager.createSession({
      session_id: sessionId,
      ...(config.language ? { language: config.language } : {}),
      ...(config.runtime ? { runtime: config.runtime } : {}),
      ...(config.limits ? { limits: config.limits } : {}),
      ...(config.allowed_side_effects ? { allowed_side_effects: config.allowed_side_effects } : {}),
    });
    try {
      await copyManifest(
        destination.default_manifest.entries,
        this.#options.hostRoots,
        manager.workspaces.get(sessionId),
      );
    } catch (error) {
      await manager.destroySession(sessionId).catch(() => {});
      throw error;
    }
    const session = new SandboxRunnerSession(this.#options, {
      sessionId,
      destinationId: destination.id,
      language: info.language,
      runtime: info.runtime,
      limits: info.limits,
    });
    this.#sessions.set(sessionId, session);
    return session;
  }

  /**
   * Resumes a runner session: the live one when its sandbox session still exists, else a
   * restore of `state.snapshot` under the same session id.
   * @throws SandboxError `INVALID_REQUEST` (another provider), `SESSION_NOT_FOUND` (gone and no
   *   snapshot), and what a restore throws (`SNAPSHOT_*`).
   */
  async resumeSession(state: RunnerSessionState): Promise<SandboxRunnerSession> {
    if (state.provider_id !== SANDBOX_PROVIDER_ID) {
      throw new SandboxError(
        "INVALID_REQUEST",
        `State of provider '${state.provider_id}', not '${SANDBOX_PROVIDER_ID}'.`,
      );
    }
    const manager = this.#options.manager;
    const live = this.#sessions.get(state.session_id);
    let exists = false;
    try {
      manager.getSession(state.session_id);
      exists = true;
    } catch (error) {
      if (!isSandboxError(error) || error.code !== "SESSION_NOT_FOUND") throw error;
    }
    if (live && exists) return live;
    if (!exists) {
      if (!state.snapshot) {
        throw new SandboxError(
          "SESSION_NOT_FOUND",
          `Runner session '${state.session_id}' is gone and its state carries no snapshot to resume from.`,
        );
      }
      if (state.snapshot.provider_id !== SANDBOX_PROVIDER_ID) {
        throw new SandboxError(
          "INVALID_REQUEST",
          `The snapshot is of provider '${state.snapshot.provider_id}'.`,
        );
      }
      await manager.restoreSession({
        snapshot_id: state.snapshot.snapshot_id,
        session_id: state.session_id,
      });
    }
    const info = manager.getSession(state.session_id);
    const session = new SandboxRunnerSession(
      this.#options,
      {
        sessionId: state.session_id,
        destinationId: state.destination_id,
        language: info.language,
        runtime: info.runtime,
        limits: info.limits,
      },
      state.snapshot,
    );
    this.#sessions.set(state.session_id, session);
    return session;
  }

  /**
   * A live runner session.
   * @throws SandboxError `SESSION_NOT_FOUND`.
   */
  get(sessionId: string): SandboxRunnerSession {
    const session = this.#sessions.get(sessionId);
    if (!session) throw new SandboxError("SESSION_NOT_FOUND", `No runner session '${sessionId}'.`);
    return session;
  }

  /** Live runner sessions. */
  list(): SandboxRunnerSession[] {
    return [...this.#sessions.values()];
  }

  /** Closes a runner session (its sandbox session is destroyed). */
  async close(sessionId: string): Promise<void> {
    const session = this.get(sessionId);
    this.#sessions.delete(sessionId);
    await session.close();
  }

  /** Forgets a runner session whose sandbox session ended (expired or destroyed elsewhere). */
  forget(sessionId: string): void {
    const session = this.#sessions.get(sessionId);
    if (!session) return;
    this.#sessions.delete(sessionId);
    session.forget();
  }
}
