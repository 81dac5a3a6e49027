/**
 * The server under the HTTP benchmark, in a process of its own (forked by ./run.ts) so the
 * load generator does not share its event loop. Talks to the parent over IPC:
 * - sends `{ kind: "listening", url }` once listening;
 * - answers `{ kind: "stats" }` with its CPU time, RSS and session count;
 * - on `{ kind: "close" }` closes the server and exits.
 *
 * @module
 */
import { defaultConfig } from "../src/config.ts";
import { createServer } from "../src/server.ts";
import { benchServerConfig } from "./http.ts";

const server = await createServer(benchServerConfig(defaultConfig()));
const url = await server.listen();
const send = (message: unknown) => process.send?.(message);
send({ kind: "listening", url });

process.on("message", (message: { kind: string }) => {
  if (message.kind === "stats") {
    send({
      kind: "stats",
      cpu: process.cpuUsage(),
      rss: process.memoryUsage.rss(),
      sessions: server.manager.sessionCount,
    });
  } else if (message.kind === "close") {
    void server.close().then(() => {
      process.disconnect?.();
      process.exit(0);
    });
  }
});
process.on("disconnect", () => {
  void server.close().then(() => process.exit(0));
});
