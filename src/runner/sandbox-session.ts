/**
 * A runner session of the `sandbox` provider (seed 000 `RemoteRunnerSession`) over one sandbox
 * session: its workspace is the runner's file system, commands are runs (./commands.ts maps
 * programs; ./programs.ts gives them argv, env, files and exit codes), and each command is a
 * process of the {@link ProcessRegistry} (seed 003), its output streamed as it is printed.
 *
 * Python commands run in the session itself, each in fresh globals, and are not journaled
 * (they keep nothing the session relies on); JavaScript and TypeScript commands each run in a
 * fresh sandbox session of their own that shares the workspace, destroyed after.
 *
 * @module
 */
import { randomUUID } from "node:crypto";
import type { Language, RunResult, SessionLimits } from "../contract/types.ts";
import { errorObject, SandboxError } from "../errors.ts";
import type { SessionManager } from "../session/manager.ts";
import { refusal } from "../session/results.ts";
import type { Workspace } from "../workspace.ts";
import type { ArtifactStore } from "./artifacts.ts";
import {
  type CommandPlan,
  type CommandRefusal,
  exitCodeOf,
  planCommand,
  workspacePath,
} from "./commands.ts";
import { createProcessDescriptor } from "./process.ts";
import type { ProcessRegistry } from "./process-registry.ts";
import {
  JS_EPILOGUE,
  JS_PROLOGUE,
  type ProgramResult,
  PYTHON_DRIVER,
  programResult,
  RUNNER_INPUT,
} from "./programs.ts";
import type {
  RemoteRunnerSession,
  RunnerArtifactExportRequest,
  RunnerArtifactExportResult,
  RunnerCommandRequest,
  RunnerCommandResult,
  RunnerFileReadRequest,
  RunnerFileReadResult,
  RunnerFileWriteRequest,
  RunnerPortRequest,
  RunnerPortResult,
  RunnerSessionState,
  RunnerSnapshotRef,
} from "./types.ts";

/** The provider id. */
export const SANDBOX_PROVIDER_ID = "sandbox";

/** What a runner session needs of the server. */
export interface RunnerContext {
  manager: SessionManager;
  processes: ProcessRegistry;
  artifacts: ArtifactStore;
  /** Where an artifact is served (`GET /v1/artifacts/{id}`), absolute when a public URL is set. */
  artifactUrl(artifactId: string): string;
}

/** How a runner session was made (kept in its state's metadata). */
export interface RunnerSessionSettings {
  sessionId: string;
  destinationId: string;
  language: Language;
  runtime: string;
  limits: SessionLimits;
}

const decoder = new TextDecoder();

/** See the module comment. */
export class SandboxRunnerSession implements RemoteRunnerSession {
  readonly #context: RunnerContext;
  readonly settings: RunnerSessionSettings;
  #snapshot: RunnerSnapshotRef | null;
  /** Commands in progress, by command id. */
  readonly #commands = new Map<string, ActiveCommand>();
  #closed = false;

  constructor(
    context: RunnerContext,
    settings: RunnerSessionSettings,
    snapshot: RunnerSnapshotRef | null = null,
  ) {
    this.#context = context;
    this.settings = settings;
    this.#snapshot = snapshot;
  }

  get id(): string {
    return this.settings.sessionId;
  }

  state(): RunnerSessionState {
    return {
      provider_id: SANDBOX_PROVIDER_ID,
      session_id: this.settings.sessionId,
      destination_id: this.settings.destinationId,
      snapshot: this.#snapshot,
      metadata: {
        language: this.settings.language,
        runtime: this.settings.runtime,
        limits: { ...this.settings.limits },
      },
    };
  }

  get #workspace(): Workspace {
    this.#assertOpen();
    return this.#context.manager.workspaces.get(this.settings.sessionId);
  }

  /**
   * Marks the session used (waking it if it hibernated), so that it neither hibernates nor
   * expires while the runner works on it, and its workspace is its own.
   */
  async #use(): Promise<void> {
    this.#assertOpen();
    await this.#context.manager.useSession(this.settings.sessionId);
  }

  #assertOpen(): void {
    if (this.#closed)
      throw new SandboxError("SESSION_NOT_FOUND", `Runner session '${this.id}' is closed.`);
  }

  /**
   * Runs a command to its end (see ./commands.ts for what runs); its output streams to the
   * process registry under `command_id` as it is printed.
   * @throws SandboxError `PROCESS_EXISTS` (the command id is running), `SESSION_NOT_FOUND`.
   */
  async runCommand(request: RunnerCommandRequest): Promise<RunnerCommandResult> {
    this.#assertOpen();
    const processes = this.#context.processes;
    const commandId = request.command_id;
    let finished!: () => void;
    const active: ActiveCommand = {
      controller: new AbortController(),
      runId: null,
      done: new Promise<void>((resolve) => {
        finished = resolve;
      }),
    };
    processes.register(
      createProcessDescriptor({
        processId: commandId,
        command: [request.program, ...request.args],
        ...(request.cwd !== null ? { cwd: request.cwd } : {}),
        runnerDestinationId: this.settings.destinationId,
        runnerSessionId: this.settings.sessionId,
      }),
      {
        // The process is stopped once the command really ended (it may be between runs).
        stop: async () => {
          if (await this.cancelCommand(commandId)) await active.done;
        },
      },
    );
    this.#commands.set(commandId, active);
    let stdout = "";
    let stderr = "";
    const emit = (stream: "stdout" | "stderr", text: string) => {
      if (text === "") return;
      if (stream === "stdout") stdout += text;
      else stderr += text;
      processes.appendText(commandId, stream, text);
    };
    try {
      await this.#use();
      const plan = planCommand(request, this.settings.language, (path) =>
        decoder.decode(this.#workspace.read(path)),
      );
      let exitCode: number | null;
      let cancelled = false;
      if ("exitCode" in plan) {
        emit("stderr", (plan as CommandRefusal).stderr);
        exitCode = (plan as CommandRefusal).exitCode;
      } else {
        const outcome = await this.#execute(active, plan, emit);
        exitCode = outcome.exitCode;
        cancelled = outcome.cancelled || active.controller.signal.aborted;
        if (cancelled) exitCode = 130;
      }
      if (cancelled) processes.markStopped(commandId, "cancelled");
      else if (exitCode === null)
        processes.markFailed(commandId, stderr.trim().split("\n").pop() || "the engine failed");
      else processes.markExited(commandId, exitCode);
      return { command_id: commandId, exit_code: exitCode, stdout, stderr };
    } catch (error) {
      processes.markFailed(commandId, error instanceof Error ? error.message : String(error));
      throw error;
    } finally {
      this.#commands.delete(commandId);
      finished();
    }
  }

  async #execute(
    active: ActiveCommand,
    plan: CommandPlan,
    emit: (stream: "stdout" | "stderr", text: string) => void,
  ): Promise<{ exitCode: number | null; cancelled: boolean }> {
    const workspace = this.#workspace;
    const files: Record<string, string> = {};
    const readOnly: string[] = [];
    for (const [path, file] of workspace.entries()) {
      files[path] = Buffer.from(file.content).toString("base64");
      if (file.readOnly) readOnly.push(path);
    }
    const spec = {
      source: plan.source,
      display: plan.displayName,
      script: plan.scriptPath,
      argv: plan.argv,
      env: plan.env,
      cwd: plan.cwd,
      files,
      read_only: readOnly,
    };
    let program: RunResult;
    let driver: RunResult;
    if (plan.language === "python") {
      program = await this.#run(
        active,
        {
          session_id: this.id,
          language: "python",
          code: PYTHON_DRIVER,
          inputs: { [RUNNER_INPUT]: spec },
        },
        emit,
      );
      driver = program;
    } else {
      // A fresh session per program: nothing of an earlier command is in scope.
      const scratch = `cmd-${randomUUID()}`;
      const manager = this.#context.manager;
      const { allowed_side_effects } = await manager.useSession(this.id);
      if (active.controller.signal.aborted) return { exitCode: 130, cancelled: true };
      await manager.createSession({
        session_id: scratch,
        language: plan.language,
        runtime: this.settings.runtime,
        limits: this.settings.limits,
        // The program may do what the runner session may, no more.
        allowed_side_effects,
      });
      manager.workspaces.set(scratch, workspace);
      try {
        const prologue = await this.#run(
          active,
          { session_id: scratch, code: JS_PROLOGUE, inputs: { [RUNNER_INPUT]: spec } },
          emit,
        );
        if (prologue.status !== "ok") {
          return {
            exitCode: this.#failed(prologue, emit),
            cancelled: prologue.status === "cancelled",
          };
        }
        program = await this.#run(
          active,
          { session_id: scratch, language: plan.language, code: plan.source },
          emit,
          (run) => isProcessExit(run),
        );
        if (plan.printValue && program.status === "ok") {
          const value = program.result;
          emit("stdout", `${typeof value === "string" ? value : JSON.stringify(value)}\n`);
        }
        // The epilogue runs even after a cancel: what the program wrote so far is kept.
        driver = await this.#run(
          active,
          { session_id: scratch, code: JS_EPILOGUE },
          emit,
          () => false,
          true,
        );
      } finally {
        await manager.destroySession(scratch).catch(() => {});
      }
    }
    const result = driver.status === "ok" ? programResult(driver.result) : null;
    if (result) this.#applyChanges(result, emit);
    if (program.status === "ok" || (plan.language !== "python" && isProcessExit(program))) {
      return {
        exitCode: result ? result.exit : exitCodeOf(program.status, null),
        cancelled: false,
      };
    }
    return { exitCode: this.#failed(program, emit), cancelled: program.status === "cancelled" };
  }

  /** The exit code of a run that did not end `ok` (its error already went to stderr). */
  #failed(
    run: RunResult,
    emit: (stream: "stdout" | "stderr", text: string) => void,
  ): number | null {
    if (run.status !== "runtime_error" && run.error && !run.stderr.includes(run.error.message)) {
      emit("stderr", `${run.error.message}\n`);
    }
    return exitCodeOf(run.status, run.error?.code ?? null);
  }

  /**
   * One run of a command, not journaled. Output streams through `emit` as it is printed; what
   * the backend added to stdout/stderr at the end (an uncaught error's report) follows, unless
   * `quiet` says the run's failure is how the program ended (`process.exit`). A cancelled
   * command starts no more runs (but `evenIfCancelled` ones, which collect its files).
   */
  async #run(
    active: ActiveCommand,
    input: Parameters<SessionManager["submit"]>[0],
    emit: (stream: "stdout" | "stderr", text: string) => void,
    quiet: (run: RunResult) => boolean = () => false,
    evenIfCancelled = false,
  ): Promise<RunResult> {
    if (active.controller.signal.aborted && !evenIfCancelled) {
      return refusal(
        "cancelled",
        input.session_id ?? this.id,
        errorObject("RUN_CANCELLED", "The command was cancelled."),
        "cancelled",
      );
    }
    const runId = `run-${randomUUID()}`;
    const streamed = { stdout: 0, stderr: 0 };
    const onOutput = (stream: "stdout" | "stderr", text: string) => {
      streamed[stream] += text.length;
      emit(stream, text);
    };
    const accepted = await this.#context.manager.submit(
      { ...input, run_id: runId },
      { onOutput, ephemeral: true },
    );
    active.runId = accepted.runId;
    // A cancel that came while the run was being accepted reaches it now.
    if (active.controller.signal.aborted && !evenIfCancelled)
      this.#context.manager.cancelRun(accepted.runId);
    let result: RunResult;
    try {
      result = await accepted.done;
    } finally {
      active.runId = null;
    }
    emit("stdout", result.stdout.slice(streamed.stdout));
    if (!quiet(result)) emit("stderr", result.stderr.slice(streamed.stderr));
    return result;
  }

  /** Writes what a program changed into the workspace; read-only files keep their content. */
  #applyChanges(
    result: ProgramResult,
    emit: (stream: "stdout" | "stderr", text: string) => void,
  ): void {
    const workspace = this.#workspace;
    for (const [path, data] of Object.entries(result.changed)) {
      try {
        workspace.write(path, Buffer.from(data, "base64"));
      } catch (error) {
        emit("stderr", `sandbox: '${path}' was not kept: ${(error as Error).message}\n`);
      }
    }
    for (const path of result.deleted) {
      if (workspace.stat(path)?.readOnly) {
        emit("stderr", `sandbox: '${path}' is read-only; it was not deleted\n`);
        continue;
      }
      workspace.delete(path);
    }
  }

  /** Cancels a running command (its current run, and any it would start); false when none runs. */
  async cancelCommand(commandId: string): Promise<boolean> {
    const active = this.#commands.get(commandId);
    if (!active) return false;
    active.controller.abort();
    if (active.runId) {
      try {
        this.#context.manager.cancelRun(active.runId);
      } catch {
        // The run ended meanwhile.
      }
    }
    return true;
  }

  async readFile(request: RunnerFileReadRequest): Promise<RunnerFileReadResult> {
    await this.#use();
    const path = this.#path(request.path);
    return { path: request.path, contents: [...this.#workspace.read(path)] };
  }

  /** @throws SandboxError `WORKSPACE_READ_ONLY`, `WORKSPACE_QUOTA_EXCEEDED`, `WORKSPACE_PATH_INVALID`. */
  async writeFile(request: RunnerFileWriteRequest): Promise<void> {
    await this.#use();
    this.#workspace.write(this.#path(request.path), Uint8Array.from(request.contents));
  }

  #path(path: string): string {
    const resolved = workspacePath("", path);
    if (resolved === null || resolved === "") {
      throw new SandboxError("WORKSPACE_PATH_INVALID", `'${path}' is not a file in the workspace.`);
    }
    return resolved;
  }

  /** @throws SandboxError `RUNNER_UNSUPPORTED` always: sessions have no network. */
  async exposePort(request: RunnerPortRequest): Promise<RunnerPortResult> {
    throw new SandboxError(
      "RUNNER_UNSUPPORTED",
      `Port preview is not supported by provider '${SANDBOX_PROVIDER_ID}': sandboxed code has no network, so nothing can listen on port ${request.port}.`,
    );
  }

  async exportArtifact(request: RunnerArtifactExportRequest): Promise<RunnerArtifactExportResult> {
    await this.#use();
    const record = await this.#context.artifacts.export(
      this.#workspace,
      workspacePath("", request.path) ?? request.path,
      request.recursive,
    );
    return {
      path: request.path,
      artifact_id: record.artifact_id,
      url: this.#context.artifactUrl(record.artifact_id),
      metadata: {
        size: record.size,
        digest: `sha3-256:${record.artifact_id}`,
        media_type: record.media_type,
        files: record.files,
        session_id: this.id,
      },
    };
  }

  async snapshot(): Promise<RunnerSnapshotRef | null> {
    this.#assertOpen();
    const info = await this.#context.manager.snapshotSession(this.id);
    this.#snapshot = {
      provider_id: SANDBOX_PROVIDER_ID,
      snapshot_id: info.snapshot_id,
      metadata: {
        bytes: info.bytes,
        kinds: info.kinds,
        backend: info.backend,
        engine: info.engine,
        language: info.language,
        created_at: info.created_at,
        destination_id: this.settings.destinationId,
      },
    };
    return this.#snapshot;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const [commandId, active] of [...this.#commands]) {
      await this.cancelCommand(commandId);
      await active.done;
    }
    await this.#context.manager.destroySession(this.id).catch(() => {});
  }

  /** Marks the session closed without touching the sandbox session (it is gone already). */
  forget(): void {
    this.#closed = true;
  }
}

/** A command in progress. */
interface ActiveCommand {
  controller: AbortController;
  /** The run it waits for now, or null between runs. */
  runId: string | null;
  /** Settles when the command has ended (its process marked). */
  done: Promise<void>;
}

/** A JavaScript program stopped by `process.exit()`. */
function isProcessExit(run: RunResult): boolean {
  return (
    run.status === "runtime_error" && /ProcessExit: process\.exit\(/.test(run.error?.message ?? "")
  );
}
