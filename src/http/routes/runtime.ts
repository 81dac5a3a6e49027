/**
 * `GET /v1/runtime`: this server as a host registry sees it — seed 001's `RuntimeSummary`
 * (runtime_id, label, kind, status, source, host_ids, capabilities, diagnostics) together
 * with the worker-runtime summary seed 002's REST adapter answers (display_name, backend,
 * status, worker counts, limits), in seed 002's `{"runtime": …}` wrapper. Runner sessions
 * count as workers.
 *
 * @module
 */
import { arch, hostname, platform } from "node:os";
import type { FastifyInstance } from "fastify";
import type { ProcessRegistry } from "../../runner/process-registry.ts";
import type { SandboxRunnerProvider } from "../../runner/sandbox-provider.ts";
import {
  boundDiagnostics,
  RUNTIME_SOURCES,
  type RuntimeDiagnostic,
  type RuntimeSummary,
  runtimeDiagnostic,
  type WorkerRuntimeSummary,
} from "../../runner/summary.ts";
import type { RuntimeRegistry } from "../../runtime/registry.ts";
import type { SessionManager } from "../../session/manager.ts";

/** What the runtime summary reads. */
export interface RuntimeSummaryDependencies {
  runtimeId: string;
  label: string;
  manager: SessionManager;
  runtimes: RuntimeRegistry;
  provider: SandboxRunnerProvider;
  processes: ProcessRegistry;
  /** Server-level notes (e.g. no snapshot key). */
  diagnostics: () => RuntimeDiagnostic[];
  /** Most sessions at once (the capability `max_workers`). */
  maxSessions: number;
}

/** The summary `GET /v1/runtime` answers (inside `{"runtime": …}`). */
export function runtimeSummary(
  deps: RuntimeSummaryDependencies,
): RuntimeSummary & Omit<WorkerRuntimeSummary, "runtime_id" | "status"> {
  const sessions = deps.provider.list();
  const running = new Set(
    deps.processes
      .list({ includeFinished: false })
      .map((process) => process.runnerSessionId)
      .filter((id): id is string => id !== undefined),
  );
  const diagnostics = boundDiagnostics([
    ...deps.diagnostics(),
    ...deps.runtimes
      .list()
      .map((runtime) => runtime.info)
      .map((info) =>
        runtimeDiagnostic(
          `runtime.backend.${info.id}`,
          "info",
          `${info.id}: ${info.languages.join(", ")} on ${info.engine}; snapshots: ${info.snapshotKinds.join(", ") || "none"}`,
        ),
      ),
  ]);
  return {
    runtime_id: deps.runtimeId,
    label: deps.label,
    kind: "sandbox",
    status: "running",
    source: RUNTIME_SOURCES.remoteHttp,
    host_ids: [deps.runtimeId],
    capabilities: {
      can_list_hosts: false,
      can_list_workers: true,
      can_get_worker: true,
      can_spawn_worker: true,
      can_stop_worker: true,
      can_accept_input: true,
      has_workspace_fs: true,
      has_shell: false,
      has_git: false,
      supports_worktrees: false,
      supports_backend_internal_tools: true,
      workspace_scope: "session",
      max_workers: deps.maxSessions,
      os: platform(),
      arch: arch(),
    },
    diagnostics,
    display_name: deps.label,
    backend: "memory",
    worker_count: sessions.length,
    active_worker_count: sessions.filter((session) => running.has(session.id)).length,
    stopped_worker_count: 0,
    cancelled_worker_count: 0,
    diagnostic_count: diagnostics.length,
    limits: { max_transcript_projection_items: 256, max_event_batch_items: 256 },
  };
}

/** A label for this host: `sandbox on <hostname>`. */
export function defaultRuntimeLabel(): string {
  return `sandbox on ${hostname()}`;
}

/** Adds `GET /v1/runtime`. */
export function registerRuntimeRoute(app: FastifyInstance, deps: RuntimeSummaryDependencies): void {
  app.get(
    "/v1/runtime",
    {
      schema: {
        tags: ["service"],
        summary:
          "This server as a worker runtime: seed 001's RuntimeSummary in seed 002's {\"runtime\": …}.",
      },
    },
    async () => ({ runtime: runtimeSummary(deps) }),
  );
}
