import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, DEFAULT_CEILINGS, defaultConfig, loadConfig } from "../src/config.ts";
import { DEFAULT_SESSION_LIMITS } from "../src/index.ts";
import { createServer } from "../src/server.ts";

const writeConfig = (content: unknown) => {
  const dir = mkdtempSync(join(tmpdir(), "sandbox-config-"));
  const file = join(dir, "config.json");
  writeFileSync(file, typeof content === "string" ? content : JSON.stringify(content));
  return { dir, file };
};

describe("loadConfig", () => {
  it("has embedded defaults that need nothing else", () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      host: "127.0.0.1",
      port: 8787,
      token: null,
      defaults: DEFAULT_SESSION_LIMITS,
      ceilings: DEFAULT_CEILINGS,
    });
    expect(config.runtimes.map((entry) => entry.module)).toEqual([
      expect.stringMatching(/runtimes\/quickjs\/index\.ts$/),
      expect.stringMatching(/runtimes\/isolated-vm\/index\.ts$/),
      expect.stringMatching(/runtimes\/pyodide\/index\.ts$/),
    ]);
    expect(config.capabilities.map((entry) => entry.module)).toEqual([
      expect.stringMatching(/capabilities\/kv\/index\.ts$/),
    ]);
  });

  it("overlays a file, then the environment", () => {
    const { dir, file } = writeConfig({
      port: 9000,
      ceilings: { memory_mb: 128 },
      runtimes: [{ module: "./backend.ts", options: { threads: 1 } }],
    });
    const config = loadConfig({
      SANDBOX_CONFIG: file,
      PORT: "9100",
      HOST: "0.0.0.0",
      SANDBOX_TOKEN: "t",
      SANDBOX_MAX_SESSIONS: "3",
    });
    expect(config).toMatchObject({ port: 9100, host: "0.0.0.0", token: "t", maxSessions: 3 });
    expect(config.ceilings).toEqual({ ...DEFAULT_CEILINGS, memory_mb: 128 });
    expect(config.runtimes).toEqual([{ module: join(dir, "backend.ts"), options: { threads: 1 } }]);
  });

  it("reads the snapshot settings from a file and the environment", () => {
    expect(loadConfig({})).toMatchObject({
      dataDir: join(process.cwd(), ".data"),
      snapshotKey: null,
      allowUnsignedSnapshots: false,
      hibernateAfterMs: 300_000,
      hibernateAboveRssBytes: null,
      hibernateOnShutdownMs: 10_000,
    });
    const { dir, file } = writeConfig({ dataDir: "state", hibernateAfterMs: null });
    expect(loadConfig({ SANDBOX_CONFIG: file })).toMatchObject({
      dataDir: join(dir, "state"),
      hibernateAfterMs: null,
    });
    const key = "ab".repeat(32);
    expect(
      loadConfig({
        SANDBOX_DATA_DIR: "/var/lib/sandbox",
        SANDBOX_SNAPSHOT_KEY: key,
        SANDBOX_ALLOW_UNSIGNED_SNAPSHOTS: "1",
        SANDBOX_HIBERNATE_AFTER_MS: "off",
        SANDBOX_HIBERNATE_ABOVE_RSS_BYTES: "2000000000",
        SANDBOX_MAX_SNAPSHOT_BYTES: "1048576",
        SANDBOX_HIBERNATE_ON_SHUTDOWN_MS: "0",
      }),
    ).toMatchObject({
      dataDir: "/var/lib/sandbox",
      snapshotKey: key,
      allowUnsignedSnapshots: true,
      hibernateAfterMs: null,
      hibernateAboveRssBytes: 2_000_000_000,
      maxSnapshotBytes: 1_048_576,
      hibernateOnShutdownMs: 0,
    });
    expect(() => loadConfig({ SANDBOX_SNAPSHOT_KEY: "short" })).toThrow(/SANDBOX_SNAPSHOT_KEY/);
    expect(() => loadConfig({ SANDBOX_HIBERNATE_AFTER_MS: "soon" })).toThrow(
      /SANDBOX_HIBERNATE_AFTER_MS/,
    );
    expect(() => loadConfig({ SANDBOX_HIBERNATE_ON_SHUTDOWN_MS: "-1" })).toThrow(
      /hibernateOnShutdownMs|SANDBOX_HIBERNATE_ON_SHUTDOWN_MS/,
    );
    expect(() => loadConfig({ SANDBOX_ALLOW_UNSIGNED_SNAPSHOTS: "yes" })).toThrow(
      /SANDBOX_ALLOW_UNSIGNED_SNAPSHOTS/,
    );
    expect(() =>
      loadConfig({ SANDBOX_SNAPSHOT_TTL_MS: "60000", SANDBOX_SESSION_TTL_MS: "120000" }),
    ).toThrow(/snapshotTtlMs/);
  });

  it("refuses a bad file or variable, naming it", () => {
    expect(() => loadConfig({ SANDBOX_CONFIG: writeConfig("{ not json").file })).toThrow(
      ConfigError,
    );
    expect(() => loadConfig({ SANDBOX_CONFIG: writeConfig({ prot: 1 }).file })).toThrow(/prot/);
    expect(() =>
      loadConfig({ SANDBOX_CONFIG: writeConfig({ defaults: { memory_mb: "big" } }).file }),
    ).toThrow(/memory_mb/);
    expect(() => loadConfig({ SANDBOX_CONFIG: "/nonexistent/config.json" })).toThrow(/nonexistent/);
    expect(() => loadConfig({ PORT: "eighty" })).toThrow(/PORT/);
  });

  it("refuses to build a server whose plugins cannot load or whose defaults pass the ceilings", async () => {
    await expect(
      createServer({
        ...defaultConfig(),
        logLevel: "silent",
        capabilities: [{ module: "/nope/pack.ts", options: {} }],
      }),
    ).rejects.toThrow(/Cannot load capabilities module/);
    await expect(
      createServer({
        ...defaultConfig(),
        logLevel: "silent",
        defaults: { ...DEFAULT_SESSION_LIMITS, memory_mb: 4_096 },
      }),
    ).rejects.toThrow(/memory_mb/);
  });
});
