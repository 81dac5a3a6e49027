/**
 * A whole runner flow over HTTP, as a worker runtime's remote runner drives it: create a
 * session from a destination whose manifest copies a project from a host root, write a file,
 * run python on it, read its output file, follow a command's live output (SSE, resumed from a
 * cursor), stop one, export artifacts, snapshot, close, resume, continue.
 */
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultConfig } from "../../src/config.ts";
import { createServer, type SandboxServer } from "../../src/server.ts";

let server: SandboxServer;
let base: string;
let roots: string;

const COUNT_PY = `import json, os, sys

path = sys.argv[1]
with open(path) as handle:
    lines = [line.strip() for line in handle if line.strip()]
mode = os.environ.get("MODE", "plain")
if mode == "upper":
    lines = [line.upper() for line in lines]
os.makedirs("out", exist_ok=True)
with open("out/result.json", "w") as handle:
    json.dump({"count": len(lines), "lines": lines, "cwd": os.getcwd()}, handle)
print(f"counted {len(lines)} lines")
`;

beforeAll(async () => {
  roots = mkdtempSync(join(tmpdir(), "runner-roots-"));
  mkdirSync(join(roots, "project"));
  writeFileSync(join(roots, "project", "count.py"), COUNT_PY);
  server = await createServer({
    ...defaultConfig(),
    logLevel: "silent",
    port: 0,
    dataDir: mkdtempSync(join(tmpdir(), "runner-data-")),
    runnerRoots: [roots],
    snapshotKey: "ab".repeat(32),
    runtimes: defaultConfig().runtimes.filter((entry) => !entry.module.includes("isolated-vm")),
  });
  base = await server.listen();
});
afterAll(async () => {
  await server?.close();
});

const call = async (method: string, path: string, body?: unknown) => {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, body: text === "" ? null : JSON.parse(text) };
};
const bytes = (text: string) => [...Buffer.from(text, "utf8")];
const text = (contents: number[]) => Buffer.from(contents).toString("utf8");

/** Reads an SSE stream until it ends; answers its events. */
async function readEvents(path: string, lastEventId?: string) {
  const response = await fetch(`${base}${path}`, {
    headers: lastEventId === undefined ? {} : { "last-event-id": lastEventId },
  });
  expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
  const raw = await response.text();
  return raw
    .split("\n\n")
    .filter((block) => block.trim() !== "" && !block.startsWith(":"))
    .map((block) => {
      const fields: Record<string, string> = {};
      for (const line of block.split("\n")) {
        const colon = line.indexOf(": ");
        fields[line.slice(0, colon)] = line.slice(colon + 2);
      }
      return { id: fields.id, event: fields.event!, data: JSON.parse(fields.data!) };
    });
}

const destination = {
  id: "python-project",
  provider_id: "sandbox",
  config: { language: "python", limits: { wall_ms: 20_000, cpu_ms: 10_000 } },
  default_manifest: {
    entries: [{ source: "project", target: "src", writable: false }],
    mounts: [],
  },
};

describe("runner sessions over HTTP", () => {
  let state: { session_id: string; [key: string]: unknown };

  it("describes the provider honestly and refuses destinations it cannot serve", async () => {
    const provider = await call("GET", "/v1/runner");
    expect(provider.body).toMatchObject({
      provider_id: "sandbox",
      capabilities: {
        command_exec: true,
        file_read: true,
        file_write: true,
        port_preview: false,
        snapshots: true,
        cancellation: true,
        artifact_export: true,
        mounts: {
          s3: false,
          gcs: false,
          r2: false,
          azure_blob: false,
          box_storage: false,
          provider_native: false,
        },
      },
    });
    const refusals: [unknown, string][] = [
      [{ ...destination, provider_id: "unix-local" }, "provider"],
      [{ ...destination, config: { language: "cobol" } }, "config"],
      [
        {
          ...destination,
          default_manifest: { entries: [], mounts: [{ name: "m", path: "m", read_only: true }] },
        },
        "mounts",
      ],
      [
        {
          ...destination,
          default_manifest: { entries: [{ source: "../../etc", target: "x", writable: false }] },
        },
        "host root",
      ],
      [
        {
          ...destination,
          default_manifest: { entries: [{ source: "/etc/passwd", target: "x", writable: false }] },
        },
        "host root",
      ],
    ];
    for (const [body, says] of refusals) {
      const refused = await call("POST", "/v1/runner/destinations/validate", body);
      expect(refused.status, JSON.stringify(body)).toBe(400);
      expect(refused.body.error.code).toBe("invalid_destination");
      expect(refused.body.error.message).toContain(says);
    }
    expect((await call("POST", "/v1/runner/destinations/validate", destination)).body).toEqual({
      valid: true,
    });
  });

  it("creates a session with the manifest copied in, read-only", async () => {
    const created = await call("POST", "/v1/runner/sessions", destination);
    expect(created.status).toBe(201);
    state = created.body;
    expect(state).toMatchObject({
      provider_id: "sandbox",
      destination_id: "python-project",
      snapshot: null,
      metadata: { language: "python", runtime: "pyodide" },
    });
    const read = await call("POST", `/v1/runner/sessions/${state.session_id}/files/read`, {
      path: "src/count.py",
    });
    expect(text(read.body.contents)).toBe(COUNT_PY);
    const overwrite = await call("POST", `/v1/runner/sessions/${state.session_id}/files/write`, {
      path: "src/count.py",
      contents: bytes("print('mine')"),
    });
    expect(overwrite.status).toBe(409);
    expect(overwrite.body.error.code).toBe("workspace_read_only");
  });

  it("writes a file, runs python on it, and reads the file it wrote", async () => {
    const id = state.session_id;
    expect(
      (
        await call("POST", `/v1/runner/sessions/${id}/files/write`, {
          path: "input.txt",
          contents: bytes("alpha\nbeta\n\ngamma\n"),
        })
      ).body,
    ).toEqual({ path: "input.txt", bytes: 18 });
    const ran = await call("POST", `/v1/runner/sessions/${id}/commands`, {
      command_id: "count-1",
      program: "python3",
      args: ["src/count.py", "input.txt"],
      cwd: null,
      env: [["MODE", "upper"]],
    });
    expect(ran.status).toBe(200);
    expect(ran.body).toEqual({
      command_id: "count-1",
      exit_code: 0,
      stdout: "counted 3 lines\n",
      stderr: "",
    });
    const result = await call("POST", `/v1/runner/sessions/${id}/files/read`, {
      path: "out/result.json",
    });
    expect(JSON.parse(text(result.body.contents))).toEqual({
      count: 3,
      lines: ["ALPHA", "BETA", "GAMMA"],
      cwd: "/workspace",
    });
    const failing = await call("POST", `/v1/runner/sessions/${id}/commands`, {
      command_id: "count-2",
      program: "python3",
      args: ["src/count.py", "missing.txt"],
      cwd: null,
      env: [],
    });
    expect(failing.body.exit_code).toBe(1);
    expect(failing.body.stderr).toMatch(/FileNotFoundError: \[Errno 44\]|FileNotFoundError/);
    expect(failing.body.stderr).toContain('File "/workspace/src/count.py", line 4');
  });

  it("lists commands as processes (seed 003: camelCase, RFC 3339, redacted summaries)", async () => {
    const listed = await call("GET", `/v1/processes?runner_session_id=${state.session_id}`);
    const count1 = listed.body.processes.find(
      (process: { processId: string }) => process.processId === "count-1",
    );
    expect(count1).toMatchObject({
      processId: "count-1",
      origin: "remote_runner",
      state: { exited: { exitCode: 0 } },
      command: ["python3", "src/count.py", "input.txt"],
      commandSummary: "python3 src/count.py input.txt",
      runnerSessionId: state.session_id,
      runnerDestinationId: "python-project",
      stoppable: false,
      stdoutTail: "counted 3 lines\n",
    });
    expect(count1.startedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    const secret = await call("POST", `/v1/runner/sessions/${state.session_id}/commands`, {
      command_id: "secret-1",
      program: "python",
      args: ["-c", "print('ok')", "API_TOKEN=abc123"],
      cwd: null,
      env: [],
    });
    expect(secret.body.exit_code).toBe(0);
    expect((await call("GET", "/v1/processes/secret-1")).body.commandSummary).toBe(
      "python -c print('ok') API_TOKEN=<redacted>",
    );
  });

  it("streams a command's output live, and resumes the stream from a cursor", async () => {
    // A JavaScript runner session: node programs in it each get a fresh scope.
    const js = await call("POST", "/v1/runner/sessions", {
      id: "scripts",
      provider_id: "sandbox",
      config: { language: "javascript" },
    });
    expect(js.status).toBe(201);
    const started = await call(
      "POST",
      `/v1/runner/sessions/${js.body.session_id}/commands?wait=false`,
      {
        command_id: "ticker",
        program: "node",
        args: [
          "-e",
          "for (let i = 0; i < 4; i++) { console.log('tick ' + i); await new Promise((r) => setTimeout(r, 150)); }",
        ],
        cwd: null,
        env: [],
      },
    );
    expect(started.status).toBe(202);
    expect(started.body.process).toMatchObject({ processId: "ticker", state: "running" });
    const events = await readEvents("/v1/processes/ticker/output");
    expect(events[0]!.event).toBe("process");
    const outputs = events.filter((event) => event.event === "output");
    expect(outputs.map((event) => event.data.chunk).join("")).toBe(
      "tick 0\ntick 1\ntick 2\ntick 3\n",
    );
    expect(outputs.length).toBeGreaterThanOrEqual(2);
    expect(
      outputs.every((event) => event.data.processId === "ticker" && event.data.stream === "stdout"),
    ).toBe(true);
    expect(events.at(-1)).toMatchObject({
      event: "exited",
      data: { exitCode: 0, process: { processId: "ticker" } },
    });
    // Reconnecting after the first chunk gives exactly the rest.
    const resumed = await readEvents("/v1/processes/ticker/output", outputs[0]!.id);
    const rest = resumed
      .filter((event) => event.event === "output")
      .map((event) => event.data.chunk)
      .join("");
    expect(outputs[0]!.data.chunk + rest).toBe("tick 0\ntick 1\ntick 2\ntick 3\n");
    const page = await call(
      "GET",
      `/v1/processes/ticker/output?format=json&cursor=${outputs[0]!.id}`,
    );
    expect(
      page.body.chunks.map((chunk: { output: { chunk: string } }) => chunk.output.chunk).join(""),
    ).toBe(rest);
  });

  it("stops a running command through the process registry", async () => {
    const id = state.session_id;
    await call("POST", `/v1/runner/sessions/${id}/commands?wait=false`, {
      command_id: "spinner",
      program: "python",
      args: ["-c", "while True:\n    pass"],
      cwd: null,
      env: [],
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const stopped = await call("POST", "/v1/processes/spinner/stop", { reason: "enough" });
    expect(stopped.body).toMatchObject({
      processId: "spinner",
      stopped: true,
      process: { state: "stopped" },
    });
    // The session is still usable.
    const after = await call("POST", `/v1/runner/sessions/${id}/commands`, {
      command_id: "after-stop",
      program: "python",
      args: ["-c", "print(6 * 7)"],
      cwd: null,
      env: [],
    });
    expect(after.body).toMatchObject({ exit_code: 0, stdout: "42\n" });
  });

  it("exports files and directories as content-addressed artifacts", async () => {
    const id = state.session_id;
    const file = await call("POST", `/v1/runner/sessions/${id}/artifacts`, {
      path: "out/result.json",
    });
    expect(file.status).toBe(201);
    expect(file.body).toMatchObject({
      path: "out/result.json",
      metadata: { media_type: "application/json", files: 1 },
    });
    const download = await fetch(`${base}${file.body.url}`);
    const content = new Uint8Array(await download.arrayBuffer());
    expect(createHash("sha3-256").update(content).digest("hex")).toBe(file.body.artifact_id);
    expect(file.body.metadata).toMatchObject({
      size: content.byteLength,
      digest: `sha3-256:${file.body.artifact_id}`,
    });
    expect(JSON.parse(Buffer.from(content).toString()).count).toBe(3);
    const directory = await call("POST", `/v1/runner/sessions/${id}/artifacts`, {
      path: "out",
      recursive: true,
    });
    expect(directory.body.metadata).toMatchObject({ media_type: "application/x-tar", files: 1 });
    const tar = Buffer.from(await (await fetch(`${base}${directory.body.url}`)).arrayBuffer());
    expect(tar.subarray(0, 100).toString("utf8").replace(/\0+$/, "")).toBe("result.json");
    const notRecursive = await call("POST", `/v1/runner/sessions/${id}/artifacts`, { path: "out" });
    expect(notRecursive.body.error.code).toBe("workspace_path_invalid");
    expect((await fetch(`${base}/v1/artifacts/${"0".repeat(64)}`)).status).toBe(404);
    const port = await call("POST", `/v1/runner/sessions/${id}/ports`, { port: 3000, label: null });
    expect(port.status).toBe(501);
    expect(port.body.error.code).toBe("runner_unsupported");
  });

  it("snapshots, closes, resumes from the snapshot and continues", async () => {
    const id = state.session_id;
    const snapshot = await call("POST", `/v1/runner/sessions/${id}/snapshot`);
    expect(snapshot.status).toBe(201);
    expect(snapshot.body).toMatchObject({
      provider_id: "sandbox",
      metadata: { language: "python" },
    });
    expect(snapshot.body.snapshot_id).toMatch(/^[0-9a-f]{64}$/);
    const saved = { ...state, snapshot: snapshot.body };
    expect((await call("DELETE", `/v1/runner/sessions/${id}`)).body).toEqual({
      session_id: id,
      closed: true,
    });
    expect((await call("GET", `/v1/runner/sessions/${id}`)).status).toBe(404);

    const resumed = await call("POST", "/v1/runner/sessions/resume", saved);
    expect(resumed.status).toBe(200);
    expect(resumed.body).toMatchObject({
      session_id: id,
      destination_id: "python-project",
      snapshot: snapshot.body,
    });
    const again = await call("POST", `/v1/runner/sessions/${id}/commands`, {
      command_id: "after-resume",
      program: "python",
      args: ["-c", "import json\nprint(json.load(open('out/result.json'))['lines'])"],
      cwd: null,
      env: [],
    });
    expect(again.body).toMatchObject({ exit_code: 0, stdout: "['ALPHA', 'BETA', 'GAMMA']\n" });
    // The manifest's read-only flag came back too.
    const overwrite = await call("POST", `/v1/runner/sessions/${id}/files/write`, {
      path: "src/count.py",
      contents: bytes("x"),
    });
    expect(overwrite.body.error.code).toBe("workspace_read_only");
  });

  it("summarizes the server as a worker runtime (GET /v1/runtime)", async () => {
    const summary = await call("GET", "/v1/runtime");
    expect(summary.body.runtime).toMatchObject({
      kind: "sandbox",
      status: "running",
      source: { kind: "remote_http", status: "active" },
      capabilities: { has_workspace_fs: true, has_shell: false, can_accept_input: true },
      backend: "memory",
      worker_count: 2,
    });
    expect(summary.body.runtime.runtime_id).toMatch(/^[A-Za-z0-9_:-]{1,120}$/);
    expect(summary.body.runtime.host_ids).toEqual([summary.body.runtime.runtime_id]);
  });
});
