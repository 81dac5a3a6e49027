import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const cli = new URL("../src/cli.ts", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "sandbox-cli-"));
const runCli = (...args: string[]) =>
  spawnSync(process.execPath, [cli, ...args], {
    encoding: "utf8",
    timeout: 60_000,
    env: { ...process.env, SANDBOX_LOG_LEVEL: "silent" },
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
});
