/**
 * How runner commands map to runs (programs, flags, shells, paths, exit codes), and how
 * manifests copy host files without escaping their roots.
 */
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  type CommandPlan,
  type CommandRefusal,
  copyManifest,
  exitCodeOf,
  planCommand,
  type RunnerCommandRequest,
  Workspace,
  workspacePath,
} from "../../src/index.ts";

const files: Record<string, string> = {
  "main.py": "print(1)",
  "app/index.js": "1",
  "app/tool.ts": "let x: number = 1",
};
const read = (path: string) => {
  const text = files[path];
  if (text === undefined) throw new Error("missing");
  return text;
};
const command = (
  program: string,
  args: string[],
  cwd: string | null = null,
): RunnerCommandRequest => ({
  command_id: "c",
  program,
  args,
  cwd,
  env: [["A", "1"]],
});
const plan = (
  language: "python" | "javascript",
  program: string,
  args: string[],
  cwd: string | null = null,
) => planCommand(command(program, args, cwd), language, read);

describe("planCommand", () => {
  it("maps python -c and python FILE, with argv and env as CPython gives them", () => {
    expect(plan("python", "python3", ["-u", "-c", "print(2)", "x", "y"])).toMatchObject<
      Partial<CommandPlan>
    >({
      language: "python",
      source: "print(2)",
      displayName: "<string>",
      scriptPath: null,
      argv: ["-c", "x", "y"],
      env: { A: "1" },
      cwd: "",
    });
    expect(plan("python", "/usr/bin/python3.14", ["main.py", "--flag"])).toMatchObject({
      source: "print(1)",
      displayName: "/workspace/main.py",
      scriptPath: "main.py",
      argv: ["main.py", "--flag"],
    });
    expect(plan("python", "python", ["../main.py"], "app")).toMatchObject({
      scriptPath: "main.py",
    });
  });

  it("maps node -e/-p/FILE and tsx, TypeScript by extension", () => {
    expect(plan("javascript", "node", ["-p", "1 + 1"])).toMatchObject({
      language: "javascript",
      printValue: true,
      argv: ["node"],
    });
    expect(plan("javascript", "node", ["index.js", "a"], "app")).toMatchObject({
      language: "javascript",
      scriptPath: "app/index.js",
      argv: ["node", "/workspace/app/index.js", "a"],
    });
    expect(plan("javascript", "node", ["app/tool.ts"])).toMatchObject({ language: "typescript" });
    expect(plan("javascript", "tsx", ["-e", "const n: number = 1"])).toMatchObject({
      language: "typescript",
    });
  });

  it("unwraps one command from sh -c, and refuses shell features", () => {
    expect(plan("python", "sh", ["-lc", "python3 -c 'print(3)'"])).toMatchObject({
      source: "print(3)",
    });
    for (const script of [
      "python3 a.py | head",
      "python3 a.py > out",
      "python3 a.py && echo ok",
      "bash -c x",
    ]) {
      expect((plan("python", "bash", ["-c", script]) as CommandRefusal).exitCode).toBe(2);
    }
  });

  it("answers as a shell would for what it cannot run", () => {
    expect(plan("python", "ruby", ["x.rb"])).toMatchObject({ exitCode: 127 });
    expect(plan("python", "node", ["-e", "1"])).toMatchObject({
      exitCode: 127,
      stderr: expect.stringContaining("destination.config.language"),
    });
    expect(plan("python", "python", ["absent.py"])).toMatchObject({
      exitCode: 2,
      stderr:
        "python: can't open file '/workspace/absent.py': [Errno 2] No such file or directory\n",
    });
    expect(plan("python", "python", ["-m", "http.server"])).toMatchObject({ exitCode: 2 });
    expect(plan("python", "python", ["../../etc/passwd"])).toMatchObject({ exitCode: 2 });
    expect(plan("python", "python", ["main.py"], "../..")).toMatchObject({ exitCode: 2 });
    expect(plan("javascript", "node", [])).toMatchObject({ exitCode: 9 });
  });
});

describe("workspacePath and exit codes", () => {
  it("keeps paths inside /workspace", () => {
    expect(workspacePath("", "a/b.txt")).toBe("a/b.txt");
    expect(workspacePath("a", "../b")).toBe("b");
    expect(workspacePath("", "/workspace/x/y")).toBe("x/y");
    expect(workspacePath("", "../x")).toBeNull();
    expect(workspacePath("a/b", "../../..")).toBeNull();
    expect(workspacePath("", "/etc/passwd")).toBeNull();
    expect(workspacePath("", "/workspacex")).toBeNull();
  });

  it("gives the exit codes docs/runner.md lists", () => {
    expect(exitCodeOf("ok", null)).toBe(0);
    expect(exitCodeOf("runtime_error", "RUNTIME_ERROR")).toBe(1);
    expect(exitCodeOf("validation_error", "SYNTAX_ERROR")).toBe(1);
    expect(exitCodeOf("timeout", "WALL_TIME_LIMIT")).toBe(124);
    expect(exitCodeOf("cancelled", "RUN_CANCELLED")).toBe(130);
    expect(exitCodeOf("resource_exhausted", "MEMORY_LIMIT")).toBe(137);
    expect(exitCodeOf("resource_exhausted", "STACK_LIMIT")).toBe(1);
    expect(exitCodeOf("interrupted", "ENGINE_CRASHED")).toBeNull();
  });
});

describe("copyManifest", () => {
  const root = mkdtempSync(join(tmpdir(), "manifest-root-"));
  const outside = mkdtempSync(join(tmpdir(), "manifest-outside-"));
  mkdirSync(join(root, "proj", "sub"), { recursive: true });
  writeFileSync(join(root, "proj", "a.txt"), "A");
  writeFileSync(join(root, "proj", "sub", "b.txt"), "B");
  writeFileSync(join(outside, "secret.txt"), "S");
  symlinkSync(join(root, "proj", "a.txt"), join(root, "proj", "link-inside"));

  it("copies files and directories, read-only when not writable", async () => {
    const workspace = new Workspace();
    const copied = await copyManifest(
      [
        { source: "proj", target: "src", writable: false },
        { source: join(root, "proj", "a.txt"), target: "copy.txt", writable: true },
      ],
      [root],
      workspace,
    );
    expect(copied).toEqual({ files: 4, bytes: 4 });
    expect(workspace.entries().map(([path, file]) => [path, file.readOnly])).toEqual([
      ["copy.txt", false],
      ["src/a.txt", true],
      ["src/link-inside", true],
      ["src/sub/b.txt", true],
    ]);
  });

  it("refuses sources outside the roots, by path or by link", async () => {
    const attempts = [
      { source: "../" + outside.split("/").pop() + "/secret.txt", target: "x", writable: true },
      { source: join(outside, "secret.txt"), target: "x", writable: true },
      { source: "/etc/passwd", target: "x", writable: true },
    ];
    for (const entry of attempts) {
      await expect(copyManifest([entry], [root], new Workspace())).rejects.toMatchObject({
        code: "INVALID_DESTINATION",
      });
    }
    symlinkSync(join(outside, "secret.txt"), join(root, "proj", "sub", "escape"));
    await expect(
      copyManifest([{ source: "proj", target: "src", writable: true }], [root], new Workspace()),
    ).rejects.toMatchObject({
      code: "INVALID_DESTINATION",
      message: expect.stringContaining("outside its host root"),
    });
    await expect(
      copyManifest([{ source: "proj", target: "x", writable: true }], [], new Workspace()),
    ).rejects.toMatchObject({
      code: "INVALID_DESTINATION",
      message: expect.stringContaining("SANDBOX_RUNNER_ROOTS"),
    });
  });
});
