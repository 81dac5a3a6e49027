import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const cli = new URL("../src/cli.ts", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "sandbox-cli-"));
const runCli = (...args: string[]) => runCliWith({}, ...args);
const runCliWith = (env: Record<string, string>, ...args: string[]) =>
  spawnSync(process.execPath, [cli, ...args], {
    encoding: "utf8",
    timeout: 60_000,
    env: { ...process.env, SANDBOX_LOG_LEVEL: "silent", ...env },
  });

describe("sandbox run FILE", () => {
  it("runs a TypeScript file in-process and prints its RunResult", () => {
    const file = join(dir, "sum.ts");
    writeFileSync(
      file,
      "const xs: number[] = numbers;\nconsole.log('summing');\nxs.reduce((a, b) => a + b, 0)",
    );
    const result = runCli("run", file, "--inputs", '{"numbers": [1, 2, 3]}');
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({
      status: "ok",
      result: 6,
      stdout: "summing\n",
    });
  });

  it("exits 1 when the run fails, 2 on bad usage", () => {
    const file = join(dir, "boom.js");
    writeFileSync(file, "throw new Error('boom')");
    const failed = runCli("run", file);
    expect(failed.status).toBe(1);
    expect(JSON.parse(failed.stdout)).toMatchObject({
      status: "runtime_error",
      error: { message: "Error: boom" },
    });
    const badInputs = runCli("run", file, "--inputs", "[1]");
    expect(badInputs.status).not.toBe(0);
    expect(badInputs.stderr).toContain("JSON object");
  });

  it("leaves the hibernated sessions of a server on the same data dir alone", () => {
    const dataDir = mkdtempSync(join(tmpdir(), "sandbox-cli-data-"));
    const index = join(dataDir, "hibernated.json");
    // What a serving server wrote: this one-shot run must neither take nor rewrite it.
    const written = `${JSON.stringify({ format: 1, sessions: [] })}\n`;
    writeFileSync(index, written);
    const file = join(dir, "one.js");
    writeFileSync(file, "var kept = 1; kept");
    const result = runCliWith(
      { SANDBOX_DATA_DIR: dataDir, SANDBOX_SNAPSHOT_KEY: "ab".repeat(32) },
      "run",
      file,
    );
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ status: "ok", result: 1 });
    expect(readFileSync(index, "utf8")).toBe(written);
  });
});
