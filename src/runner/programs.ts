/**
 * The guest code that makes a sandbox run behave like a program run by a runner: a fresh
 * program scope, `argv`, environment variables, a working directory, the session's files
 * readable and writable through the language's own file API, and an exit code.
 *
 * Files cross as base64 both ways: the workspace's files go in as an input; what the program
 * created, changed or deleted comes back as the run's result and is written to the workspace
 * by the host (read-only files stay as they were).
 *
 * - Python: one run. {@link PYTHON_DRIVER} writes the files under `/workspace` of the
 *   interpreter's own in-memory file system, `chdir`s, sets `sys.argv` and `os.environ`,
 *   `exec`s the program (compiled under its own file name, so tracebacks show the user's lines)
 *   in fresh globals with `__name__ == "__main__"`, maps `SystemExit` to the exit code, prints
 *   an uncaught exception's traceback (without the driver's frame) as Python does, and answers
 *   the changed files.
 * - JavaScript/TypeScript: three runs in a fresh session: {@link JS_PROLOGUE} (defines
 *   `process` with `env`, `argv`, `cwd()`, `exit()` and `exitCode`, `require` of `fs`
 *   (sync calls on the files), `path` and `os`, `__filename`, `__dirname`), the program as
 *   its own cell (its lines are the user's), then {@link JS_EPILOGUE} answering the exit code
 *   and the changed files.
 *
 * @module
 */

/** Input name the drivers read their parameters from. */
export const RUNNER_INPUT = "__runner__";

/** The Python driver cell: answers `{exit, changed, deleted}`. */
export const PYTHON_DRIVER = `def __runner_main(spec):
    import base64, hashlib, os, shutil, sys, traceback
    root = "/workspace"
    if os.path.isdir(root):
        shutil.rmtree(root)
    os.makedirs(root)
    before = {}
    for path, data in spec["files"].items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        raw = base64.b64decode(data)
        with open(full, "wb") as handle:
            handle.write(raw)
        before[path] = hashlib.sha256(raw).hexdigest()
    for path in spec["read_only"]:
        os.chmod(os.path.join(root, path), 0o444)
    cwd = os.path.join(root, spec["cwd"]) if spec["cwd"] else root
    os.makedirs(cwd, exist_ok=True)
    saved = (os.getcwd(), list(sys.argv), dict(os.environ))
    os.chdir(cwd)
    sys.argv = list(spec["argv"])
    os.environ.update(spec["env"])
    code = 0
    try:
        scope = {"__name__": "__main__", "__builtins__": __builtins__}
        if spec["script"] is not None:
            scope["__file__"] = os.path.join(root, spec["script"])
        exec(compile(spec["source"], spec["display"], "exec"), scope)
    except KeyboardInterrupt:
        raise
    except SystemExit as stop:
        if stop.code is None:
            code = 0
        elif isinstance(stop.code, int):
            code = stop.code & 0xFF
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException as error:
        traceback.print_exception(type(error), error, error.__traceback__.tb_next)
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.chdir(saved[0])
        sys.argv = saved[1]
        os.environ.clear()
        os.environ.update(saved[2])
    changed = {}
    seen = set()
    for directory, _, names in os.walk(root):
        for name in names:
            full = os.path.join(directory, name)
            path = os.path.relpath(full, root)
            seen.add(path)
            with open(full, "rb") as handle:
                raw = handle.read()
            if before.get(path) != hashlib.sha256(raw).hexdigest():
                changed[path] = base64.b64encode(raw).decode("ascii")
    deleted = sorted(path for path in before if path not in seen)
    return {"exit": code, "changed": changed, "deleted": deleted}

__runner_main(__runner__)
`;

/** The JavaScript prologue cell (defines the program's environment; answers nothing). */
export const JS_PROLOGUE = String.raw`{
  const spec = __runner__;
  const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const fromBase64 = (text) => {
    const clean = text.replace(/=+$/, "");
    const out = new Uint8Array(Math.floor((clean.length * 3) / 4));
    let bits = 0, value = 0, index = 0;
    for (const ch of clean) {
      value = (value << 6) | B64.indexOf(ch);
      bits += 6;
      if (bits >= 8) { bits -= 8; out[index++] = (value >> bits) & 0xff; }
    }
    return out;
  };
  const toBase64 = (bytes) => {
    let out = "";
    for (let i = 0; i < bytes.length; i += 3) {
      const a = bytes[i], b = bytes[i + 1], c = bytes[i + 2];
      out += B64[a >> 2] + B64[((a & 3) << 4) | ((b ?? 0) >> 4)];
      out += b === undefined ? "=" : B64[((b & 15) << 2) | ((c ?? 0) >> 6)];
      out += c === undefined ? "=" : B64[c & 63];
    }
    return out;
  };
  const utf8 = (text) => {
    const out = [];
    for (const ch of text) {
      let code = ch.codePointAt(0);
      if (code < 0x80) out.push(code);
      else if (code < 0x800) out.push(0xc0 | (code >> 6), 0x80 | (code & 63));
      else if (code < 0x10000) out.push(0xe0 | (code >> 12), 0x80 | ((code >> 6) & 63), 0x80 | (code & 63));
      else out.push(0xf0 | (code >> 18), 0x80 | ((code >> 12) & 63), 0x80 | ((code >> 6) & 63), 0x80 | (code & 63));
    }
    return Uint8Array.from(out);
  };
  const fromUtf8 = (bytes) => {
    let out = "";
    for (let i = 0; i < bytes.length; ) {
      const a = bytes[i++];
      let code = a;
      if (a >= 0xf0) code = ((a & 7) << 18) | ((bytes[i++] & 63) << 12) | ((bytes[i++] & 63) << 6) | (bytes[i++] & 63);
      else if (a >= 0xe0) code = ((a & 15) << 12) | ((bytes[i++] & 63) << 6) | (bytes[i++] & 63);
      else if (a >= 0xc0) code = ((a & 31) << 6) | (bytes[i++] & 63);
      out += String.fromCodePoint(code);
    }
    return out;
  };
  const files = new Map();
  for (const [path, data] of Object.entries(spec.files)) files.set(path, fromBase64(data));
  let cwd = spec.cwd;
  const normalize = (path) => {
    const parts = [];
    const full = String(path).startsWith("/") ? String(path) : "/workspace/" + cwd + "/" + String(path);
    for (const part of full.split("/")) {
      if (part === "" || part === ".") continue;
      if (part === "..") parts.pop(); else parts.push(part);
    }
    if (parts[0] !== "workspace") throw Object.assign(new Error("EACCES: permission denied, '" + path + "' is outside /workspace"), { code: "EACCES" });
    return parts.slice(1).join("/");
  };
  const missing = (path) => Object.assign(new Error("ENOENT: no such file or directory, open '" + path + "'"), { code: "ENOENT" });
  const readOnly = new Set(spec.read_only);
  const writable = (path) => {
    const key = normalize(path);
    if (readOnly.has(key)) throw Object.assign(new Error("EACCES: permission denied, open '" + path + "'"), { code: "EACCES" });
    return key;
  };
  const isDir = (key) => key === "" || [...files.keys()].some((name) => name.startsWith(key + "/"));
  const encodingOf = (options) => (typeof options === "string" ? options : options && options.encoding) || null;
  const fs = {
    existsSync: (path) => { const key = normalize(path); return files.has(key) || isDir(key); },
    readFileSync: (path, options) => {
      const key = normalize(path);
      const bytes = files.get(key);
      if (!bytes) throw missing(path);
      return encodingOf(options) ? fromUtf8(bytes) : bytes.slice();
    },
    writeFileSync: (path, data) => { files.set(writable(path), typeof data === "string" ? utf8(data) : Uint8Array.from(data)); },
    appendFileSync: (path, data) => {
      const key = writable(path);
      const more = typeof data === "string" ? utf8(data) : Uint8Array.from(data);
      const old = files.get(key) ?? new Uint8Array(0);
      const joined = new Uint8Array(old.length + more.length);
      joined.set(old); joined.set(more, old.length);
      files.set(key, joined);
    },
    unlinkSync: (path) => { const key = writable(path); if (!files.delete(key)) throw missing(path); },
    rmSync: (path, options) => {
      const key = writable(path);
      if (files.delete(key)) return;
      if (isDir(key) && options && options.recursive) { for (const name of [...files.keys()]) if (name.startsWith(key + "/")) files.delete(name); return; }
      if (!(options && options.force)) throw missing(path);
    },
    mkdirSync: () => undefined,
    readdirSync: (path) => {
      const key = normalize(path);
      if (!isDir(key)) throw missing(path);
      const prefix = key === "" ? "" : key + "/";
      return [...new Set([...files.keys()].filter((name) => name.startsWith(prefix)).map((name) => name.slice(prefix.length).split("/")[0]))].sort();
    },
    statSync: (path) => {
      const key = normalize(path);
      const bytes = files.get(key);
      if (!bytes && !isDir(key)) throw missing(path);
      return { size: bytes ? bytes.length : 0, isFile: () => Boolean(bytes), isDirectory: () => !bytes };
    },
  };
  const path = {
    sep: "/",
    join: (...parts) => parts.join("/").replace(/\/+/g, "/"),
    basename: (p) => String(p).split("/").filter(Boolean).pop() ?? "",
    dirname: (p) => { const parts = String(p).split("/"); parts.pop(); return parts.join("/") || (String(p).startsWith("/") ? "/" : "."); },
    extname: (p) => { const base = String(p).split("/").pop() ?? ""; const dot = base.lastIndexOf("."); return dot > 0 ? base.slice(dot) : ""; },
    resolve: (...parts) => "/workspace/" + normalize(parts.join("/")),
  };
  const modules = { fs, "node:fs": fs, path, "node:path": path, os: { EOL: "\n", platform: () => "sandbox" }, "node:os": { EOL: "\n", platform: () => "sandbox" } };
  globalThis.require = (name) => {
    if (name in modules) return modules[name];
    throw Object.assign(new Error("Cannot find module '" + name + "' (the sandbox offers fs, path and os)"), { code: "MODULE_NOT_FOUND" });
  };
  globalThis.process = {
    argv: spec.argv,
    env: { ...spec.env },
    platform: "sandbox",
    exitCode: undefined,
    cwd: () => "/workspace" + (cwd ? "/" + cwd : ""),
    chdir: (dir) => { cwd = normalize(dir); },
    exit: (code) => { globalThis.process.exitCode = code ?? globalThis.process.exitCode ?? 0; throw Object.assign(new Error("process.exit(" + globalThis.process.exitCode + ")"), { name: "ProcessExit" }); },
  };
  globalThis.__filename = spec.script === null ? undefined : "/workspace/" + spec.script;
  globalThis.__dirname = spec.script === null ? process.cwd() : path.dirname("/workspace/" + spec.script);
  globalThis.module = { exports: {} };
  globalThis.exports = globalThis.module.exports;
  globalThis.__runnerDone = () => {
    const before = new Set(Object.keys(spec.files));
    const changed = {};
    for (const [name, bytes] of files) if (!(name in spec.files) || toBase64(bytes) !== spec.files[name]) changed[name] = toBase64(bytes);
    return { exit: process.exitCode ?? 0, changed, deleted: [...before].filter((name) => !files.has(name)).sort() };
  };
}
`;

/** The JavaScript epilogue cell: answers `{exit, changed, deleted}`. */
export const JS_EPILOGUE = "__runnerDone()";

/** What a driver answers. */
export interface ProgramResult {
  exit: number;
  /** Files created or changed: path → base64. */
  changed: Record<string, string>;
  /** Files the program deleted. */
  deleted: string[];
}

/** Reads a driver's result, or null when it is not one. */
export function programResult(value: unknown): ProgramResult | null {
  if (typeof value !== "object" || value === null) return null;
  const { exit, changed, deleted } = value as Record<string, unknown>;
  if (typeof exit !== "number" || typeof changed !== "object" || changed === null) return null;
  if (!Array.isArray(deleted)) return null;
  for (const data of Object.values(changed)) if (typeof data !== "string") return null;
  return {
    // As a process's status: the low 8 bits of an integer; anything else is a failure.
    exit: Number.isInteger(exit) ? exit & 0xff : 1,
    changed: changed as Record<string, string>,
    deleted: deleted.filter((path): path is string => typeof path === "string"),
  };
}
