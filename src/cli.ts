#!/usr/bin/env node
/**
 * The command line: `sandbox serve` (the default) starts the HTTP server; `sandbox run FILE`
 * runs a file once, in-process or against a server (`--url`), and prints its RunResult.
 *
 * Source: commander.
 * @module
 */
import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { Command, InvalidArgumentError } from "commander";
import { ConfigError, loadConfig } from "./config.ts";
import type { Language, RunResult } from "./contract/types.ts";
import { createServer, VERSION } from "./server.ts";

const program = new Command()
  .name("sandbox")
  .description("Sandboxed code execution for AI agents.")
  .version(VERSION);

program
  .command("serve", { isDefault: true })
  .description("Start the HTTP server (configuration: docs/configuration.md).")
  .action(async () => {
    const config = loadConfig();
    const server = await createServer(config);
    const url = await server.listen();
    server.app.log.info(`sandbox listening on ${url}`);
    if (config.logLevel === "silent") process.stdout.write(`sandbox listening on ${url}\n`);
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      server.app.log.info(`${signal}: shutting down`);
      await server.close();
      process.exit(0);
    };
    process.on("SIGINT", () => void stop("SIGINT"));
    process.on("SIGTERM", () => void stop("SIGTERM"));
  });

const languageOf = (file: string, given?: string): Language => {
  if (given) return given as Language;
  const extension = extname(file);
  if (extension === ".ts" || extension === ".mts") return "typescript";
  if (extension === ".py") return "python";
  return "javascript";
};

const parseJsonObject = (text: string) => {
  try {
    const value = JSON.parse(text) as unknown;
    if (typeof value !== "object" || value === null || Array.isArray(value))
      throw new Error("not an object");
    return value as Record<string, unknown>;
  } catch (error) {
    throw new InvalidArgumentError(`must be a JSON object (${(error as Error).message})`);
  }
};

program
  .command("run <file>")
  .description("Run a file once and print its RunResult as JSON; exit 0 when its status is ok.")
  .option(
    "-l, --language <language>",
    "javascript | typescript | python (default: from the extension)",
  )
  .option("-s, --session <id>", "session id", "cli")
  .option("-i, --inputs <json>", "inputs as a JSON object", parseJsonObject)
  .option("-u, --url <url>", "run on this server instead of in-process")
  .option("-t, --token <token>", "bearer token for --url (default: $SANDBOX_TOKEN)")
  .action(
    async (
      file: string,
      options: {
        language?: string;
        session: string;
        inputs?: Record<string, unknown>;
        url?: string;
        token?: string;
      },
    ) => {
      const request = {
        session_id: options.session,
        language: languageOf(file, options.language),
        code: readFileSync(file, "utf8"),
        inputs: options.inputs ?? {},
      };
      let result: RunResult;
      if (options.url) {
        const token = options.token ?? process.env.SANDBOX_TOKEN;
        const response = await fetch(new URL("/v1/runs", options.url), {
          method: "POST",
          headers: {
            "content-type": "application/json",
            ...(token ? { authorization: `Bearer ${token}` } : {}),
          },
          body: JSON.stringify(request),
        });
        const body = (await response.json()) as RunResult;
        if (!response.ok) {
          process.stderr.write(`${JSON.stringify(body)}\n`);
          process.exit(2);
        }
        result = body;
      } else {
        // A one-shot server: it must not take or write the sessions of a server on this data dir.
        const server = await createServer(
          { ...loadConfig(), logLevel: "silent" },
          { keepSessions: false },
        );
        try {
          result = await server.manager.run(request as never);
        } finally {
          await server.close();
        }
      }
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      process.exit(result.status === "ok" ? 0 : 1);
    },
  );

program.parseAsync().catch((error: unknown) => {
  const message =
    error instanceof ConfigError || error instanceof Error ? error.message : String(error);
  process.stderr.write(`sandbox: ${message}\n`);
  process.exit(2);
});
