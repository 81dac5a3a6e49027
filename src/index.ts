/**
 * The public surface of the core: what backends (`runtimes/`), tool packs (`capabilities/`),
 * examples and embedders import. Nothing outside `src/` imports a deeper path.
 *
 * @module
 */
export * from "./contract/ids.ts";
export * from "./contract/schemas.ts";
export * from "./contract/types.ts";
export * from "./digest.ts";
export * from "./errors.ts";
export * from "./js/cell.ts";
export * from "./js/prelude.ts";
export * from "./js/typecheck.ts";
export * from "./js/web-globals.ts";
export * from "./plugins.ts";
export * from "./runner/artifacts.ts";
export * from "./runner/commands.ts";
export * from "./runner/manifest.ts";
export * from "./runner/parse.ts";
export * from "./runner/process.ts";
export * from "./runner/process-registry.ts";
export * from "./runner/programs.ts";
export * from "./runner/rfc3339.ts";
export * from "./runner/sandbox-provider.ts";
export * from "./runner/sandbox-session.ts";
export * from "./runner/schemas.ts";
export * from "./runner/summary.ts";
export * from "./runner/types.ts";
export * from "./runtime/determinism.ts";
export * from "./runtime/engine-host.ts";
export * from "./runtime/engine-protocol.ts";
export * from "./runtime/interface.ts";
export * from "./runtime/outcomes.ts";
export * from "./runtime/output.ts";
export * from "./runtime/registry.ts";
export * from "./runtime/worker-pool.ts";
export * from "./session/hibernation-index.ts";
export * from "./session/limits.ts";
export * from "./session/manager.ts";
export * from "./session/types.ts";
export * from "./snapshot/envelope.ts";
export * from "./snapshot/journal.ts";
export * from "./snapshot/payload.ts";
export * from "./snapshot/schema.ts";
export * from "./snapshot/snapshots.ts";
export * from "./snapshot/store.ts";
export * from "./tools/approval-rule.ts";
export * from "./tools/approvals.ts";
export * from "./tools/gateway.ts";
export * from "./tools/limiter.ts";
export * from "./tools/registry.ts";
export * from "./tools/remote.ts";
export * from "./tools/stubs.ts";
export * from "./workspace.ts";
