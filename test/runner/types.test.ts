/**
 * Seed 000's remote runner types: the seed's three round-trip tests as JSON round trips, the
 * serde defaults on input and the refusals. Every expected JSON text here is what serde_json
 * 1.0.87 wrote for the seed's own types (built from Debian's crates), so a client on the seed's
 * types reads and writes exactly these.
 */
import { Ajv2020 } from "ajv/dist/2020.js";
import Fastify from "fastify";
import { describe, expect, it } from "vitest";
import { isSandboxError } from "../../src/errors.ts";
import {
  bytesFromJson,
  bytesToJson,
  parseRunnerArtifactExportRequest,
  parseRunnerArtifactExportResult,
  parseRunnerCapabilities,
  parseRunnerCommandRequest,
  parseRunnerCommandResult,
  parseRunnerDestination,
  parseRunnerFileReadRequest,
  parseRunnerFileReadResult,
  parseRunnerFileWriteRequest,
  parseRunnerMount,
  parseRunnerPortRequest,
  parseRunnerPortResult,
  parseRunnerSessionState,
  parseThreadRunnerBinding,
} from "../../src/runner/parse.ts";
import { RUNNER_REQUEST_SCHEMAS } from "../../src/runner/schemas.ts";
import {
  cancelCommandOn,
  exportArtifactFrom,
  type RemoteRunnerProvider,
  type RemoteRunnerSession,
  type RunnerArtifactExportResult,
  type RunnerCommandRequest,
  type RunnerDestination,
  type RunnerMount,
  type RunnerPortResult,
  setupHintOf,
  validateDestinationWith,
} from "../../src/runner/types.ts";

/** Serialize, check the text is serde's, read back, and check the value is unchanged. */
function roundTrip<T>(value: T, serdeText: string, parse: (json: unknown) => T): void {
  const text = JSON.stringify(value);
  expect(text).toBe(serdeText);
  const decoded = parse(JSON.parse(text));
  expect(decoded).toEqual(value);
  expect(JSON.stringify(decoded)).toBe(serdeText);
}

/** The SandboxError `parse` throws on `json` (fails the test when it does not throw). */
function refusal(parse: (json: unknown) => unknown, json: unknown) {
  try {
    parse(json);
  } catch (error) {
    if (isSandboxError(error)) return { code: error.code, message: error.message };
    throw error;
  }
  throw new Error(`accepted ${JSON.stringify(json)}`);
}

describe("seed 000 round trips", () => {
  it("remote_runner_types_round_trip_json", () => {
    const destination: RunnerDestination = {
      id: "local",
      provider_id: "unix-local",
      config: { root: "." },
      default_manifest: {
        entries: [{ source: "src", target: "workspace/src", writable: true }],
        mounts: [
          {
            name: "cache",
            path: ".cache",
            read_only: false,
            intent: { kind: "provider_native", uri: "" },
          },
        ],
      },
    };
    roundTrip(
      destination,
      '{"id":"local","provider_id":"unix-local","config":{"root":"."},"default_manifest":{"entries":[{"source":"src","target":"workspace/src","writable":true}],"mounts":[{"name":"cache","path":".cache","read_only":false,"intent":{"kind":"provider_native","uri":""}}]}}',
      parseRunnerDestination,
    );
  });

  it("command_and_port_operations_are_protocol_safe", () => {
    const command: RunnerCommandRequest = {
      command_id: "cmd-1",
      program: "sh",
      args: ["-lc", "echo hi"],
      cwd: "workspace",
      env: [["RUST_LOG", "info"]],
    };
    const port: RunnerPortResult = { port: 3000, url: "https://preview.example" };
    // env is Vec<(String, String)>: an array of two-element arrays.
    roundTrip(
      command,
      '{"command_id":"cmd-1","program":"sh","args":["-lc","echo hi"],"cwd":"workspace","env":[["RUST_LOG","info"]]}',
      parseRunnerCommandRequest,
    );
    roundTrip(port, '{"port":3000,"url":"https://preview.example"}', parseRunnerPortResult);
  });

  it("mount_and_artifact_operations_are_protocol_safe", () => {
    const mount: RunnerMount = {
      name: "dataset",
      path: "mnt/dataset",
      read_only: true,
      intent: { kind: "r2", uri: "r2://bucket/prefix", credentials: { id: "r2-readonly" } },
    };
    const artifact: RunnerArtifactExportResult = {
      path: "out/report.json",
      artifact_id: "artifact-1",
      url: "https://artifacts.example/report.json",
      metadata: { size: 128 },
    };
    roundTrip(
      mount,
      '{"name":"dataset","path":"mnt/dataset","read_only":true,"intent":{"kind":"r2","uri":"r2://bucket/prefix","credentials":{"id":"r2-readonly"}}}',
      parseRunnerMount,
    );
    roundTrip(
      artifact,
      '{"path":"out/report.json","artifact_id":"artifact-1","url":"https://artifacts.example/report.json","metadata":{"size":128}}',
      parseRunnerArtifactExportResult,
    );
  });
});

describe("serde defaults on input", () => {
  const text = (value: unknown) => JSON.stringify(value);

  it("fills a destination's config, manifest and mount intents", () => {
    expect(text(parseRunnerDestination({ id: "a", provider_id: "b" }))).toBe(
      '{"id":"a","provider_id":"b","config":null,"default_manifest":{"entries":[],"mounts":[]}}',
    );
    expect(
      text(
        parseRunnerDestination({ id: "a", provider_id: "b", config: null, default_manifest: {} }),
      ),
    ).toBe(
      '{"id":"a","provider_id":"b","config":null,"default_manifest":{"entries":[],"mounts":[]}}',
    );
    expect(text(parseRunnerMount({ name: "n", path: "p", read_only: false }))).toBe(
      '{"name":"n","path":"p","read_only":false,"intent":{"kind":"provider_native","uri":""}}',
    );
  });

  it("leaves credentials out when absent or null", () => {
    const mount = parseRunnerMount({
      name: "n",
      path: "p",
      read_only: false,
      intent: { kind: "s3", uri: "", credentials: null },
    });
    expect(text(mount)).toBe(
      '{"name":"n","path":"p","read_only":false,"intent":{"kind":"s3","uri":""}}',
    );
    expect("credentials" in mount.intent).toBe(false);
  });

  it("fills capabilities' artifact_export and mounts", () => {
    const required = {
      command_exec: true,
      file_read: true,
      file_write: true,
      port_preview: false,
      snapshots: true,
      cancellation: true,
    };
    expect(text(parseRunnerCapabilities(required))).toBe(
      '{"command_exec":true,"file_read":true,"file_write":true,"port_preview":false,"snapshots":true,"cancellation":true,"artifact_export":false,"mounts":{"s3":false,"gcs":false,"r2":false,"azure_blob":false,"box_storage":false,"provider_native":false}}',
    );
    expect(parseRunnerCapabilities({ ...required, mounts: { s3: true } }).mounts).toEqual({
      s3: true,
      gcs: false,
      r2: false,
      azure_blob: false,
      box_storage: false,
      provider_native: false,
    });
  });

  it("fills requests and results", () => {
    expect(text(parseRunnerCommandRequest({ command_id: "c", program: "p", cwd: null }))).toBe(
      '{"command_id":"c","program":"p","args":[],"cwd":null,"env":[]}',
    );
    expect(text(parseRunnerPortRequest({ port: 80 }))).toBe('{"port":80,"label":null}');
    expect(text(parseRunnerArtifactExportRequest({ path: "x" }))).toBe(
      '{"path":"x","recursive":false}',
    );
    expect(text(parseRunnerArtifactExportResult({ path: "x", artifact_id: "a" }))).toBe(
      '{"path":"x","artifact_id":"a","url":null,"metadata":null}',
    );
    expect(text(parseRunnerCommandResult({ command_id: "c", stdout: "", stderr: "" }))).toBe(
      '{"command_id":"c","exit_code":null,"stdout":"","stderr":""}',
    );
  });

  it("fills session states and their snapshot refs", () => {
    expect(
      parseRunnerSessionState({
        provider_id: "p",
        session_id: "s",
        destination_id: "d",
        snapshot: null,
        metadata: { note: 1 },
      }),
    ).toEqual({
      provider_id: "p",
      session_id: "s",
      destination_id: "d",
      snapshot: null,
      metadata: { note: 1 },
    });
    expect(
      text(parseRunnerSessionState({ provider_id: "p", session_id: "s", destination_id: "d" })),
    ).toBe(
      '{"provider_id":"p","session_id":"s","destination_id":"d","snapshot":null,"metadata":null}',
    );
    expect(
      text(
        parseRunnerSessionState({
          provider_id: "p",
          session_id: "s",
          destination_id: "d",
          snapshot: { provider_id: "p", snapshot_id: "x" },
        }),
      ),
    ).toBe(
      '{"provider_id":"p","session_id":"s","destination_id":"d","snapshot":{"provider_id":"p","snapshot_id":"x","metadata":null},"metadata":null}',
    );
  });

  it("fills a thread binding's destination and read roots", () => {
    expect(
      text(
        parseThreadRunnerBinding({ destination: { id: "a", provider_id: "b" }, workspace: "/w" }),
      ),
    ).toBe(
      '{"destination":{"id":"a","provider_id":"b","config":null,"default_manifest":{"entries":[],"mounts":[]}},"workspace":"/w","read_roots":[]}',
    );
  });

  it("copies JSON values instead of sharing them", () => {
    const config = { nested: { list: [1, 2] } };
    const destination = parseRunnerDestination({ id: "a", provider_id: "b", config });
    config.nested.list.push(3);
    expect(destination.config).toEqual({ nested: { list: [1, 2] } });
  });
});

describe("refusals (SandboxError INVALID_REQUEST naming the field)", () => {
  it("refuses null where serde refuses it", () => {
    expect(
      refusal(parseRunnerDestination, { id: "a", provider_id: "b", default_manifest: null }),
    ).toEqual({
      code: "INVALID_REQUEST",
      message: "RunnerDestination.default_manifest must be an object, not null.",
    });
    expect(
      refusal(parseRunnerMount, { name: "n", path: "p", read_only: false, intent: null }).message,
    ).toBe("RunnerMount.intent must be an object, not null.");
    expect(
      refusal(parseRunnerCommandRequest, { command_id: "c", program: "p", args: null }).message,
    ).toBe("RunnerCommandRequest.args must be an array, not null.");
  });

  it("refuses missing required fields", () => {
    expect(
      refusal(parseRunnerMount, { name: "n", path: "p", read_only: false, intent: { kind: "s3" } })
        .message,
    ).toBe("RunnerMount.intent.uri is missing (a string).");
    expect(refusal(parseRunnerCapabilities, { command_exec: true }).message).toBe(
      "RunnerCapabilities.file_read is missing (true or false).",
    );
    expect(refusal(parseRunnerFileWriteRequest, { contents: [] }).message).toBe(
      "RunnerFileWriteRequest.path is missing (a string).",
    );
  });

  it("refuses a mount kind that is not snake_case", () => {
    const mount = { name: "n", path: "p", read_only: false, intent: { kind: "S3", uri: "" } };
    expect(refusal(parseRunnerMount, mount).message).toBe(
      'RunnerMount.intent.kind must be one of s3, gcs, r2, azure_blob, box_storage, provider_native, not "S3".',
    );
  });

  it("refuses env entries that are not pairs of strings", () => {
    const base = { command_id: "c", program: "p" };
    for (const env of [{ A: "b" }, [["A", "b", "c"]], [["A"]], [["A", 1]], ["A=b"]]) {
      expect(refusal(parseRunnerCommandRequest, { ...base, env }).code).toBe("INVALID_REQUEST");
    }
    expect(refusal(parseRunnerCommandRequest, { ...base, env: [["A", "b", "c"]] }).message).toBe(
      "RunnerCommandRequest.env[0] must be an array of two strings [name, value], not an array.",
    );
  });

  it("refuses bytes outside u8 and contents that are not an array", () => {
    for (const contents of [[256], [-1], [1.5], ["1"], [null], "aGk="]) {
      expect(refusal(parseRunnerFileWriteRequest, { path: "a", contents }).code).toBe(
        "INVALID_REQUEST",
      );
    }
    expect(refusal(parseRunnerFileWriteRequest, { path: "a", contents: [0, 256] }).message).toBe(
      "RunnerFileWriteRequest.contents[1] must be an integer from 0 to 255, not an integer.",
    );
  });

  it("refuses ports outside u16 and exit codes outside i32", () => {
    expect(refusal(parseRunnerPortRequest, { port: 65_536 }).message).toBe(
      "RunnerPortRequest.port must be an integer from 0 to 65535, not an integer.",
    );
    expect(refusal(parseRunnerPortRequest, {}).message).toBe(
      "RunnerPortRequest.port is missing (an integer 0-65535).",
    );
    expect(
      refusal(parseRunnerCommandResult, {
        command_id: "c",
        exit_code: 2 ** 31,
        stdout: "",
        stderr: "",
      }).code,
    ).toBe("INVALID_REQUEST");
  });

  it("refuses unknown fields in request bodies but ignores them elsewhere, as serde", () => {
    expect(refusal(parseRunnerDestination, { id: "a", provider_id: "b", zzz: 1 }).message).toBe(
      'RunnerDestination has an unknown field "zzz".',
    );
    expect(
      refusal(parseRunnerDestination, {
        id: "a",
        provider_id: "b",
        default_manifest: { entries: [{ source: "s", target: "t", writable: true, mode: 1 }] },
      }).message,
    ).toBe('RunnerDestination.default_manifest.entries[0] has an unknown field "mode".');
    expect(parseRunnerPortResult({ port: 1, url: null, extra: true })).toEqual({
      port: 1,
      url: null,
    });
    expect(
      parseRunnerDestination({ id: "a", provider_id: "b", zzz: 1 }, { refuseUnknownFields: false })
        .id,
    ).toBe("a");
  });

  it("refuses what is not an object", () => {
    for (const json of [null, [], "x", 1]) {
      expect(refusal(parseRunnerSessionState, json).message).toMatch(
        /^RunnerSessionState must be an object, not /,
      );
    }
  });
});

describe("bytes (Vec<u8>)", () => {
  it("round-trips every byte value through an array of numbers", () => {
    const bytes = Uint8Array.from({ length: 256 }, (_, index) => index);
    const json = bytesToJson(bytes);
    expect(json).toHaveLength(256);
    expect(json[255]).toBe(255);
    expect(bytesFromJson(JSON.parse(JSON.stringify(json)))).toEqual(bytes);
    expect(
      JSON.stringify(parseRunnerFileReadResult({ path: "a.bin", contents: [0, 1, 255] })),
    ).toBe('{"path":"a.bin","contents":[0,1,255]}');
  });

  it("refuses anything but integers 0-255", () => {
    expect(bytesFromJson([0, 255])).toEqual(Uint8Array.of(0, 255));
    expect(() => bytesFromJson([1, 2, 256], "body.contents")).toThrow(
      "body.contents[2] must be an integer from 0 to 255, not an integer.",
    );
    expect(() => bytesFromJson([-1])).toThrow("contents[0] must be an integer");
    expect(() => bytesFromJson("aGk=")).toThrow(
      "contents must be an array of bytes, not a string.",
    );
  });
});

const PARSERS: Record<string, (json: unknown) => unknown> = {
  RunnerDestination: parseRunnerDestination,
  RunnerSessionState: parseRunnerSessionState,
  RunnerCommandRequest: parseRunnerCommandRequest,
  RunnerFileReadRequest: parseRunnerFileReadRequest,
  RunnerFileWriteRequest: parseRunnerFileWriteRequest,
  RunnerPortRequest: parseRunnerPortRequest,
  RunnerArtifactExportRequest: parseRunnerArtifactExportRequest,
};
const parseRequest = (id: string, body: unknown) => PARSERS[id]!(body);

describe("request JSON Schemas", () => {
  const good: Record<string, unknown> = {
    RunnerDestination: JSON.parse(
      '{"id":"local","provider_id":"unix-local","config":{"root":"."},"default_manifest":{"entries":[{"source":"src","target":"workspace/src","writable":true}],"mounts":[{"name":"cache","path":".cache","read_only":false,"intent":{"kind":"provider_native","uri":""}}]}}',
    ),
    RunnerSessionState: { provider_id: "p", session_id: "s", destination_id: "d", snapshot: null },
    RunnerCommandRequest: JSON.parse(
      '{"command_id":"cmd-1","program":"sh","args":["-lc","echo hi"],"cwd":"workspace","env":[["RUST_LOG","info"]]}',
    ),
    RunnerFileReadRequest: { path: "out.txt" },
    RunnerFileWriteRequest: { path: "a.bin", contents: [0, 1, 255] },
    RunnerPortRequest: { port: 8080, label: null },
    RunnerArtifactExportRequest: { path: "out/report.json" },
  };
  const bad: [string, unknown][] = [
    ["RunnerDestination", { id: "a", provider_id: "b", zzz: 1 }],
    ["RunnerDestination", { id: "a", provider_id: "b", default_manifest: null }],
    ["RunnerSessionState", { provider_id: "p", session_id: "s" }],
    ["RunnerCommandRequest", { command_id: "c", program: "p", env: [["A", "b", "c"]] }],
    ["RunnerCommandRequest", { command_id: "c", program: "p", env: { A: "b" } }],
    ["RunnerFileReadRequest", { path: 1 }],
    ["RunnerFileWriteRequest", { path: "a", contents: [256] }],
    ["RunnerPortRequest", { port: 65_536 }],
    ["RunnerArtifactExportRequest", { path: "a", recursive: "yes" }],
  ];

  async function appWith(customOptions: object) {
    const app = Fastify({ ajv: { customOptions } });
    for (const schema of RUNNER_REQUEST_SCHEMAS) app.addSchema(schema);
    for (const schema of RUNNER_REQUEST_SCHEMAS) {
      app.post(
        `/${schema.$id}`,
        { schema: { body: { $ref: `${schema.$id}#` } } },
        async (request) => request.body,
      );
    }
    await app.ready();
    return app;
  }
  const post = (app: Awaited<ReturnType<typeof appWith>>, id: string, body: unknown) =>
    app.inject({ method: "POST", url: `/${id}`, payload: body as object });

  it("agree with the parse functions under the server's ajv options (draft-07, strict)", async () => {
    const app = await appWith({ removeAdditional: false, coerceTypes: false, useDefaults: false });
    for (const [id, body] of Object.entries(good)) {
      expect((await post(app, id, body)).statusCode, id).toBe(200);
    }
    for (const [id, body] of bad) {
      expect(() => parseRequest(id, body), id).toThrow();
      expect((await post(app, id, body)).statusCode, `${id} ${JSON.stringify(body)}`).toBe(400);
    }
    await app.close();
  });

  it("compile under fastify's default ajv options too", async () => {
    // (Those options coerce types: a null cwd would become "", which is why the server turns
    // coercion off and the parse functions read the raw body.)
    const app = await appWith({});
    for (const [id, body] of Object.entries(good)) {
      expect((await post(app, id, body)).statusCode, id).toBe(200);
    }
    await app.close();
  });

  it("compile as draft 2020-12 too", () => {
    const ajv = new Ajv2020({ strict: true });
    for (const schema of RUNNER_REQUEST_SCHEMAS) {
      const validate = ajv.compile(schema);
      expect(validate(good[schema.$id]), schema.$id).toBe(true);
    }
    for (const [id, body] of bad) expect(ajv.getSchema(id)!(body), id).toBe(false);
  });
});

describe("the seed's trait defaults", () => {
  const provider: RemoteRunnerProvider = {
    id: () => "p",
    capabilities: () =>
      parseRunnerCapabilities({
        command_exec: true,
        file_read: true,
        file_write: true,
        port_preview: false,
        snapshots: false,
        cancellation: false,
      }),
    createSession: async () => {
      throw new Error("unused");
    },
    resumeSession: async () => {
      throw new Error("unused");
    },
  };
  const session = {
    state: () => ({
      provider_id: "p",
      session_id: "s",
      destination_id: "d",
      snapshot: null,
      metadata: null,
    }),
  } as RemoteRunnerSession;

  it("answers no hint, accepts every destination, cancels nothing", async () => {
    expect(setupHintOf(provider)).toBeNull();
    await expect(
      validateDestinationWith(provider, parseRunnerDestination({ id: "a", provider_id: "p" })),
    ).resolves.toBeUndefined();
    expect(await cancelCommandOn(session, "cmd-1")).toBe(false);
  });

  it("fails artifact export with the seed's message", async () => {
    await expect(
      exportArtifactFrom(session, { path: "x", recursive: false }),
    ).rejects.toMatchObject({
      code: "RUNNER_UNSUPPORTED",
      message: "runner artifact export is not supported by this provider",
    });
  });

  it("uses the provider's own methods when it has them", async () => {
    const seen: string[] = [];
    const custom: RemoteRunnerProvider = {
      ...provider,
      setupHint: () => "install nothing",
      validateDestination: async (destination) => {
        seen.push(destination.id);
      },
    };
    expect(setupHintOf(custom)).toBe("install nothing");
    await validateDestinationWith(custom, parseRunnerDestination({ id: "dest", provider_id: "p" }));
    expect(seen).toEqual(["dest"]);
    const cancelling = { ...session, cancelCommand: async (id: string) => id === "cmd-1" };
    expect(await cancelCommandOn(cancelling, "cmd-1")).toBe(true);
  });
});
