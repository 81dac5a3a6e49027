/**
 * The remote runner contract of seed 000 (`../shared/seeds/000_*.txt`): what a worker runtime
 * asks of a runner provider and of the sessions it opens, ported to TypeScript.
 *
 * Every interface has exactly the JSON shape serde gives the seed's Rust type: snake_case field
 * names as declared, `PathBuf` as a string, `Option<T>` as `T | null` (written as `null`),
 * except `RunnerMountIntent.credentials`, which serde omits when it is `None`. Two shapes to
 * note: `RunnerCommandRequest.env` (`Vec<(String, String)>`) is an array of two-string arrays,
 * `[["RUST_LOG", "info"]]`; file contents (`Vec<u8>`) are arrays of integers 0–255
 * (`bytesToJson` / `bytesFromJson` in ./parse.ts convert).
 *
 * Reading JSON into these types, with serde's defaults for absent fields, is ./parse.ts; the
 * JSON Schemas of the request bodies are ./schemas.ts.
 *
 * @module
 */
import type { JsonValue } from "../contract/types.ts";
import { SandboxError } from "../errors.ts";

/** Id of a runner provider, e.g. `"sandbox"` (seed: `RemoteRunnerProviderId = String`). */
export type RemoteRunnerProviderId = string;
/** Id of a session a provider opened (seed: `RemoteRunnerSessionId = String`). */
export type RemoteRunnerSessionId = string;
/** Id of a runner destination (seed: `RunnerDestinationId = String`). */
export type RunnerDestinationId = string;
/** Client-chosen id of one command, used to cancel it (seed: `RunnerCommandId = String`). */
export type RunnerCommandId = string;

/**
 * Which kinds of mount a provider can attach (seed: `RunnerMountCapabilities`, all fields
 * `#[serde(default)]`: an absent field is `false`).
 */
export interface RunnerMountCapabilities {
  s3: boolean;
  gcs: boolean;
  r2: boolean;
  azure_blob: boolean;
  box_storage: boolean;
  provider_native: boolean;
}

/** The seed's `RunnerMountCapabilities::default()`: nothing mountable. Frozen. */
export const DEFAULT_RUNNER_MOUNT_CAPABILITIES: Readonly<RunnerMountCapabilities> = Object.freeze({
  s3: false,
  gcs: false,
  r2: false,
  azure_blob: false,
  box_storage: false,
  provider_native: false,
});

/**
 * What a provider's sessions can do (seed: `RunnerCapabilities`). The first six fields are
 * required on input; `artifact_export` defaults to `false` and `mounts` to
 * {@link DEFAULT_RUNNER_MOUNT_CAPABILITIES}.
 */
export interface RunnerCapabilities {
  command_exec: boolean;
  file_read: boolean;
  file_write: boolean;
  port_preview: boolean;
  snapshots: boolean;
  cancellation: boolean;
  artifact_export: boolean;
  mounts: RunnerMountCapabilities;
}

/**
 * Where runner sessions are created: a provider and its configuration
 * (seed: `RunnerDestination`). On input `config` defaults to `null` and `default_manifest` to
 * an empty manifest.
 */
export interface RunnerDestination {
  id: RunnerDestinationId;
  provider_id: RemoteRunnerProviderId;
  /** Provider-specific settings (seed: `serde_json::Value`, default `null`). */
  config: JsonValue;
  /** Files and mounts every session of this destination starts with. */
  default_manifest: RunnerManifest;
}

/** Files copied into and mounts attached to a new session (seed: `RunnerManifest`). */
export interface RunnerManifest {
  /** Default `[]`. */
  entries: RunnerManifestEntry[];
  /** Default `[]`. */
  mounts: RunnerMount[];
}

/** One file or directory copied into a new session (seed: `RunnerManifestEntry`). */
export interface RunnerManifestEntry {
  /** Path on the provider's side (seed: `PathBuf`). */
  source: string;
  /** Path inside the session's workspace (seed: `PathBuf`). */
  target: string;
  /** Whether code in the session may change it. */
  writable: boolean;
}

/** Storage attached to a session at a path (seed: `RunnerMount`). */
export interface RunnerMount {
  name: string;
  /** Where it appears inside the session (seed: `PathBuf`). */
  path: string;
  read_only: boolean;
  /** What to mount; default {@link DEFAULT_RUNNER_MOUNT_INTENT}. */
  intent: RunnerMountIntent;
}

/** Kind of storage a mount comes from (seed: `RunnerMountKind`, snake_case). */
export type RunnerMountKind =
  | "s3"
  | "gcs"
  | "r2"
  | "azure_blob"
  | "box_storage"
  | "provider_native";

/** Every {@link RunnerMountKind}, in declaration order. */
export const RUNNER_MOUNT_KINDS: readonly RunnerMountKind[] = [
  "s3",
  "gcs",
  "r2",
  "azure_blob",
  "box_storage",
  "provider_native",
];

/** What a mount points at (seed: `RunnerMountIntent`). */
export interface RunnerMountIntent {
  kind: RunnerMountKind;
  /** E.g. `"r2://bucket/prefix"`; required when an intent is given. */
  uri: string;
  /**
   * The secret to mount with (seed: `Option<RunnerSecretRef>`, `skip_serializing_if =
   * "Option::is_none"`): absent means none, and it is left out of the JSON then.
   */
  credentials?: RunnerSecretRef;
}

/** The seed's `RunnerMountIntent::default()`: provider-native, empty URI, no credentials. */
export const DEFAULT_RUNNER_MOUNT_INTENT: Readonly<RunnerMountIntent> = Object.freeze({
  kind: "provider_native",
  uri: "",
});

/** A reference to a secret the provider holds; never the secret (seed: `RunnerSecretRef`). */
export interface RunnerSecretRef {
  id: string;
}

/** A snapshot of a runner session, to resume from (seed: `RunnerSnapshotRef`). */
export interface RunnerSnapshotRef {
  provider_id: RemoteRunnerProviderId;
  snapshot_id: string;
  /** Provider-specific (seed: `serde_json::Value`, default `null`). */
  metadata: JsonValue;
}

/**
 * What a worker runtime keeps of a runner session so it can resume it later
 * (seed: `RunnerSessionState`). On input `snapshot` defaults to `null` and `metadata` to `null`.
 */
export interface RunnerSessionState {
  provider_id: RemoteRunnerProviderId;
  session_id: RemoteRunnerSessionId;
  destination_id: RunnerDestinationId;
  snapshot: RunnerSnapshotRef | null;
  metadata: JsonValue;
}

/** A conversation thread's runner: destination and paths (seed: `ThreadRunnerBinding`). */
export interface ThreadRunnerBinding {
  destination: RunnerDestination;
  /** Workspace root inside the runner (seed: `PathBuf`). */
  workspace: string;
  /** Extra readable roots (seed: `Vec<PathBuf>`, default `[]`). */
  read_roots: string[];
}

/** An open session with its workspace paths (seed: `RemoteWorkspace`; not serializable). */
export interface RemoteWorkspace {
  session: RemoteRunnerSession;
  root: string;
  read_roots: string[];
}

/**
 * Run a program in a session (seed: `RunnerCommandRequest`). On input `args` and `env`
 * default to `[]` and `cwd` to `null`.
 */
export interface RunnerCommandRequest {
  command_id: RunnerCommandId;
  program: string;
  args: string[];
  /** Working directory in the workspace (seed: `Option<PathBuf>`); `null` is the root. */
  cwd: string | null;
  /** Environment entries in order, each `[name, value]` (seed: `Vec<(String, String)>`). */
  env: [string, string][];
}

/** How a command ended (seed: `RunnerCommandResult`). */
export interface RunnerCommandResult {
  command_id: RunnerCommandId;
  /** Process exit code (seed: `Option<i32>`); `null` when it did not exit by itself. */
  exit_code: number | null;
  stdout: string;
  stderr: string;
}

/** Read one file of the session's workspace (seed: `RunnerFileReadRequest`). */
export interface RunnerFileReadRequest {
  path: string;
}

/** A file's bytes (seed: `RunnerFileReadResult`). */
export interface RunnerFileReadResult {
  path: string;
  /** The bytes as integers 0–255 (seed: `Vec<u8>`). */
  contents: number[];
}

/** Write one file of the session's workspace (seed: `RunnerFileWriteRequest`). */
export interface RunnerFileWriteRequest {
  path: string;
  /** The bytes as integers 0–255 (seed: `Vec<u8>`). */
  contents: number[];
}

/** Expose a port of the session for preview (seed: `RunnerPortRequest`). */
export interface RunnerPortRequest {
  /** TCP port, 0–65,535 (seed: `u16`). */
  port: number;
  /** Seed: `Option<String>`; absent on input is `null`. */
  label: string | null;
}

/** Where an exposed port can be reached (seed: `RunnerPortResult`). */
export interface RunnerPortResult {
  /** Seed: `u16`. */
  port: number;
  url: string | null;
}

/** Export a file (or, with `recursive`, a directory) as an artifact (seed: `RunnerArtifactExportRequest`). */
export interface RunnerArtifactExportRequest {
  path: string;
  /** Default `false`. */
  recursive: boolean;
}

/** An exported artifact (seed: `RunnerArtifactExportResult`). */
export interface RunnerArtifactExportResult {
  path: string;
  artifact_id: string;
  /** Where it can be downloaded, when it is served. */
  url: string | null;
  /** Provider-specific, e.g. `{"size": 128}` (seed: `serde_json::Value`, default `null`). */
  metadata: JsonValue;
}

/**
 * A runner provider (seed: trait `RemoteRunnerProvider`). Methods that fail reject with a
 * {@link SandboxError} (the seed's `anyhow::Error`).
 */
export interface RemoteRunnerProvider {
  /** The provider's id, e.g. `"sandbox"`. */
  id(): RemoteRunnerProviderId;
  /** What its sessions can do; honest, since a worker runtime plans by it. */
  capabilities(): RunnerCapabilities;
  /** One line on how to set the provider up; optional (seed default `None`): see {@link setupHintOf}. */
  setupHint?(): string | null;
  /** Opens a session at a destination, with its default manifest in place. */
  createSession(destination: RunnerDestination): Promise<RemoteRunnerSession>;
  /**
   * Checks a destination before any session is created; optional (seed default: accept
   * everything): see {@link validateDestinationWith}.
   */
  validateDestination?(destination: RunnerDestination): Promise<void>;
  /** Reopens a session from what {@link RemoteRunnerSession.state} returned. */
  resumeSession(state: RunnerSessionState): Promise<RemoteRunnerSession>;
}

/**
 * An open runner session (seed: trait `RemoteRunnerSession`). Methods that fail reject with a
 * {@link SandboxError}; a command that runs and fails is a result with its exit code, not a
 * rejection.
 */
export interface RemoteRunnerSession {
  /** What to keep to resume this session later. */
  state(): RunnerSessionState;
  runCommand(request: RunnerCommandRequest): Promise<RunnerCommandResult>;
  /**
   * Cancels a running command; resolves `true` when one was cancelled. Optional (seed default:
   * `false`, nothing cancelled): see {@link cancelCommandOn}.
   */
  cancelCommand?(commandId: RunnerCommandId): Promise<boolean>;
  readFile(request: RunnerFileReadRequest): Promise<RunnerFileReadResult>;
  writeFile(request: RunnerFileWriteRequest): Promise<void>;
  exposePort(request: RunnerPortRequest): Promise<RunnerPortResult>;
  /**
   * Exports a file as an artifact. Optional (seed default: fails "runner artifact export is not
   * supported by this provider"): see {@link exportArtifactFrom}.
   */
  exportArtifact?(request: RunnerArtifactExportRequest): Promise<RunnerArtifactExportResult>;
  /** Takes a snapshot to resume from; `null` when the provider has none to offer. */
  snapshot(): Promise<RunnerSnapshotRef | null>;
  /** Ends the session and frees what it holds. */
  close(): Promise<void>;
}

/** `provider.setup_hint()` with the seed's default (`None` → `null`). */
export function setupHintOf(provider: RemoteRunnerProvider): string | null {
  return provider.setupHint ? provider.setupHint() : null;
}

/** `provider.validate_destination(destination)` with the seed's default (accept). */
export async function validateDestinationWith(
  provider: RemoteRunnerProvider,
  destination: RunnerDestination,
): Promise<void> {
  if (provider.validateDestination) await provider.validateDestination(destination);
}

/** `session.cancel_command(id)` with the seed's default (`false`: nothing was cancelled). */
export async function cancelCommandOn(
  session: RemoteRunnerSession,
  commandId: RunnerCommandId,
): Promise<boolean> {
  return session.cancelCommand ? session.cancelCommand(commandId) : false;
}

/**
 * `session.export_artifact(request)` with the seed's default.
 * @throws SandboxError `RUNNER_UNSUPPORTED` ("runner artifact export is not supported by this
 *   provider", the seed's message) when the session has no `exportArtifact`.
 */
export async function exportArtifactFrom(
  session: RemoteRunnerSession,
  request: RunnerArtifactExportRequest,
): Promise<RunnerArtifactExportResult> {
  if (!session.exportArtifact) {
    throw new SandboxError(
      "RUNNER_UNSUPPORTED",
      "runner artifact export is not supported by this provider",
    );
  }
  return session.exportArtifact(request);
}
