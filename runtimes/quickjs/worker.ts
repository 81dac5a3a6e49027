/**
 * Entry of a QuickJS worker thread: loads the engine build once and serves sessions to the
 * server over the engine protocol. Started by ./index.ts; never imported.
 *
 * @module
 */
import { parentPort, workerData } from "node:worker_threads";
import { type EngineWorkerData, type HostMessage, serveEngine } from "../../src/index.ts";
import { QuickJsEngine } from "./engine.ts";
import type { QuickJsWorkerOptions } from "./index.ts";
import { loadEngineBuild } from "./memory.ts";

const data = workerData as EngineWorkerData;
const options = data.options as QuickJsWorkerOptions;
const port = parentPort!;
const build = await loadEngineBuild(options.variant);
const engine = new QuickJsEngine({
  build,
  info: options.info,
  spareSessions: options.spareSessions,
});
serveEngine(
  engine,
  {
    postMessage: (message) => port.postMessage(message),
    onMessage: (listener) => port.on("message", (message: HostMessage) => listener(message)),
  },
  data.cancelBuffer,
);
