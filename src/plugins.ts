/**
 * How backends and tool packs plug into the server: a module names a plugin object as its
 * `plugin` export, and the server's configuration lists module specifiers to load
 * (see docs/configuration.md). The core never imports a backend or a pack by path.
 *
 * @module
 */
import type { LanguageRuntime } from "./runtime/interface.ts";
import type { RegisteredTool } from "./tools/registry.ts";
import type { WorkspaceRegistry } from "./workspace.ts";

/** What the server offers plugins when it creates them. */
export interface PluginHost {
  /** The sessions' file workspaces (the `files` pack reads and writes them). */
  readonly workspaces: WorkspaceRegistry;
  /** Registers a listener called with a session's id when the session is destroyed or expires. */
  onSessionDestroyed(listener: (sessionId: string) => void): void;
}

/** A backend module's `plugin` export. */
export interface RuntimePlugin {
  readonly kind: "runtime";
  /** Backend id, e.g. `"quickjs"`; the same as the runtime's `info.id`. */
  readonly id: string;
  /** Builds the backend. `options` is the configuration's object for this backend (may be `{}`). */
  create(
    options: Record<string, unknown>,
    host: PluginHost,
  ): LanguageRuntime | Promise<LanguageRuntime>;
}

/** A tool pack module's `plugin` export. */
export interface CapabilityPlugin {
  readonly kind: "capabilities";
  /** Pack id, e.g. `"kv"`. */
  readonly id: string;
  /** Builds the pack's tools. `options` is the configuration's object for this pack. */
  create(
    options: Record<string, unknown>,
    host: PluginHost,
  ): RegisteredTool[] | Promise<RegisteredTool[]>;
}

/** Either kind of plugin. */
export type Plugin = RuntimePlugin | CapabilityPlugin;

/** Whether a module export looks like a {@link Plugin}. */
export function isPlugin(value: unknown): value is Plugin {
  if (typeof value !== "object" || value === null) return false;
  const candidate = value as Partial<Plugin>;
  return (
    (candidate.kind === "runtime" || candidate.kind === "capabilities") &&
    typeof candidate.id === "string" &&
    typeof candidate.create === "function"
  );
}
