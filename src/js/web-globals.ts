/**
 * Web platform globals guest code commonly reaches for, which neither QuickJS nor a bare V8
 * isolate has: `atob`, `btoa`, `TextEncoder`, `TextDecoder` (UTF-8) and `structuredClone`.
 * They are plain JavaScript evaluated inside the guest (the prelude, src/js/prelude.ts, holds
 * this source as a string and evaluates it the first time guest code reads one of them, so a
 * session that never uses them never compiles them): they touch nothing of the host, and guest
 * code that patches the builtins they use only changes its own results.
 *
 * Behaviour follows the WHATWG specs where it matters to programs: `atob` is the
 * forgiving-base64 decode (ASCII whitespace ignored, `InvalidCharacterError` otherwise);
 * `btoa` refuses characters above U+00FF; `TextEncoder` writes lone surrogates as U+FFFD;
 * `TextDecoder` takes `utf-8` (and its labels) only, replaces each maximal invalid subpart
 * with U+FFFD (or throws a `TypeError` with `fatal: true`), drops a leading BOM unless
 * `ignoreBOM`, and does not stream (`{stream: true}` is a `TypeError`); `structuredClone`
 * copies primitives, arrays, plain objects (other objects as plain objects of their own
 * enumerable properties), `Date`, `RegExp`, `Map`, `Set`, `ArrayBuffer`, typed arrays,
 * `DataView`, errors and primitive wrappers, keeping cycles and shared references, and throws
 * a `DataCloneError` for functions, symbols, promises and weak collections. There is no
 * `transfer` option.
 *
 * @module
 */

/** Source of a function expression answering `{atob, btoa, TextEncoder, TextDecoder, structuredClone}`. */
export const WEB_GLOBALS_SOURCE = String.raw`(function () {
  "use strict";
  const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const B64_VALUE = {};
  for (let i = 0; i < 64; i++) B64_VALUE[B64[i]] = i;
  const fromCharCode = String.fromCharCode;

  function namedError(name, message) {
    const error = new Error(message);
    error.name = name;
    return error;
  }

  function charsOf(codes) {
    const parts = [];
    for (let i = 0; i < codes.length; i += 8192) parts.push(fromCharCode.apply(null, codes.slice(i, i + 8192)));
    return parts.join("");
  }

  function btoa(data) {
    if (arguments.length < 1) throw new TypeError("btoa: 1 argument required");
    const text = String(data);
    const out = [];
    for (let i = 0; i < text.length; i += 3) {
      const a = text.charCodeAt(i);
      const b = i + 1 < text.length ? text.charCodeAt(i + 1) : 0;
      const c = i + 2 < text.length ? text.charCodeAt(i + 2) : 0;
      if (a > 255 || b > 255 || c > 255) {
        throw namedError("InvalidCharacterError", "btoa: the string has characters outside Latin-1");
      }
      const n = (a << 16) | (b << 8) | c;
      out.push(
        B64[(n >> 18) & 63] + B64[(n >> 12) & 63] +
        (i + 1 < text.length ? B64[(n >> 6) & 63] : "=") +
        (i + 2 < text.length ? B64[n & 63] : "="),
      );
    }
    return out.join("");
  }

  function atob(data) {
    if (arguments.length < 1) throw new TypeError("atob: 1 argument required");
    let text = String(data).replace(/[\t\n\f\r ]+/g, "");
    if (text.length % 4 === 0) text = text.replace(/==?$/, "");
    if (text.length % 4 === 1 || /[^A-Za-z0-9+/]/.test(text)) {
      throw namedError("InvalidCharacterError", "atob: the string is not valid base64");
    }
    const codes = [];
    let buffer = 0;
    let bits = 0;
    for (let i = 0; i < text.length; i++) {
      buffer = ((buffer << 6) | B64_VALUE[text[i]]) & 0xffffff;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        codes.push((buffer >> bits) & 255);
      }
    }
    return charsOf(codes);
  }

  // Encodes text as UTF-8 into bytes (at most bytes.length); answers [UTF-16 units read, bytes written].
  function encodeUtf8(text, bytes) {
    const room = bytes.length;
    let read = 0;
    let written = 0;
    while (read < text.length) {
      let code = text.charCodeAt(read);
      let units = 1;
      if (code >= 0xd800 && code <= 0xdbff && read + 1 < text.length) {
        const next = text.charCodeAt(read + 1);
        if (next >= 0xdc00 && next <= 0xdfff) {
          code = 0x10000 + ((code - 0xd800) << 10) + (next - 0xdc00);
          units = 2;
        } else code = 0xfffd;
      } else if (code >= 0xd800 && code <= 0xdfff) code = 0xfffd;
      const size = code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
      if (written + size > room) break;
      if (size === 1) bytes[written] = code;
      else if (size === 2) {
        bytes[written] = 0xc0 | (code >> 6);
        bytes[written + 1] = 0x80 | (code & 63);
      } else if (size === 3) {
        bytes[written] = 0xe0 | (code >> 12);
        bytes[written + 1] = 0x80 | ((code >> 6) & 63);
        bytes[written + 2] = 0x80 | (code & 63);
      } else {
        bytes[written] = 0xf0 | (code >> 18);
        bytes[written + 1] = 0x80 | ((code >> 12) & 63);
        bytes[written + 2] = 0x80 | ((code >> 6) & 63);
        bytes[written + 3] = 0x80 | (code & 63);
      }
      written += size;
      read += units;
    }
    return [read, written];
  }

  class TextEncoder {
    get encoding() { return "utf-8"; }
    encode(input = "") {
      const text = String(input);
      const bytes = new Uint8Array(text.length * 3);
      return bytes.slice(0, encodeUtf8(text, bytes)[1]);
    }
    encodeInto(source, destination) {
      if (!(destination instanceof Uint8Array)) throw new TypeError("encodeInto: the destination must be a Uint8Array");
      const [read, written] = encodeUtf8(String(source), destination);
      return { read, written };
    }
  }

  const UTF8_LABELS = ["utf-8", "utf8", "unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "x-unicode20utf8"];

  class TextDecoder {
    #fatal;
    #ignoreBOM;
    constructor(label = "utf-8", options = {}) {
      const name = String(label).trim().toLowerCase();
      if (UTF8_LABELS.indexOf(name) < 0) throw new RangeError("TextDecoder: the encoding '" + label + "' is not supported (only utf-8)");
      this.#fatal = Boolean(options && options.fatal);
      this.#ignoreBOM = Boolean(options && options.ignoreBOM);
    }
    get encoding() { return "utf-8"; }
    get fatal() { return this.#fatal; }
    get ignoreBOM() { return this.#ignoreBOM; }
    decode(input, options) {
      if (options && options.stream) throw new TypeError("TextDecoder: streaming is not supported");
      if (input === undefined) return "";
      let bytes;
      if (input instanceof ArrayBuffer) bytes = new Uint8Array(input);
      else if (ArrayBuffer.isView(input)) bytes = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
      else throw new TypeError("TextDecoder: decode takes an ArrayBuffer or a view of one");
      const fatal = this.#fatal;
      const codes = [];
      const invalid = () => {
        if (fatal) throw new TypeError("TextDecoder: the data is not valid utf-8");
        codes.push(0xfffd);
      };
      const n = bytes.length;
      let i = 0;
      if (!this.#ignoreBOM && n >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) i = 3;
      while (i < n) {
        const first = bytes[i];
        if (first < 0x80) { codes.push(first); i++; continue; }
        let need;
        let code;
        let lower = 0x80;
        let upper = 0xbf;
        if (first >= 0xc2 && first <= 0xdf) { need = 1; code = first & 0x1f; }
        else if (first >= 0xe0 && first <= 0xef) {
          need = 2; code = first & 0xf;
          if (first === 0xe0) lower = 0xa0;
          if (first === 0xed) upper = 0x9f;
        } else if (first >= 0xf0 && first <= 0xf4) {
          need = 3; code = first & 0x7;
          if (first === 0xf0) lower = 0x90;
          if (first === 0xf4) upper = 0x8f;
        } else { invalid(); i++; continue; }
        let j = i + 1;
        let complete = true;
        for (let k = 0; k < need; k++, j++) {
          const next = j < n ? bytes[j] : -1;
          if (next < lower || next > upper) { complete = false; break; }
          lower = 0x80;
          upper = 0xbf;
          code = (code << 6) | (next & 0x3f);
        }
        // An incomplete sequence is one U+FFFD; the byte that broke it is read again.
        if (!complete) { invalid(); i = j; continue; }
        if (code > 0xffff) {
          code -= 0x10000;
          codes.push(0xd800 + (code >> 10), 0xdc00 + (code & 0x3ff));
        } else codes.push(code);
        i = j;
      }
      return charsOf(codes);
    }
  }

  const ERROR_TYPES = { Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError };

  function structuredClone(value) {
    if (arguments.length < 1) throw new TypeError("structuredClone: 1 argument required");
    const copies = new Map();
    const refuse = (what) => namedError("DataCloneError", "structuredClone: " + what + " could not be cloned");
    function copy(source) {
      const type = typeof source;
      if (type === "function") throw refuse("a function");
      if (type === "symbol") throw refuse("a symbol");
      if (source === null || type !== "object") return source;
      if (copies.has(source)) return copies.get(source);
      let target;
      const keep = (made) => { copies.set(source, made); return made; };
      if (Array.isArray(source)) {
        target = keep(new Array(source.length));
        for (const key of Object.keys(source)) target[key] = copy(source[key]);
        return target;
      }
      if (source instanceof Map) {
        target = keep(new Map());
        for (const [key, item] of source) target.set(copy(key), copy(item));
        return target;
      }
      if (source instanceof Set) {
        target = keep(new Set());
        for (const item of source) target.add(copy(item));
        return target;
      }
      if (source instanceof Date) return keep(new Date(source.getTime()));
      if (source instanceof RegExp) return keep(new RegExp(source.source, source.flags));
      if (source instanceof ArrayBuffer) return keep(source.slice(0));
      if (ArrayBuffer.isView(source)) {
        const buffer = copy(source.buffer);
        if (source instanceof DataView) return keep(new DataView(buffer, source.byteOffset, source.byteLength));
        const View = Object.getPrototypeOf(source).constructor;
        return keep(new View(buffer, source.byteOffset, source.length));
      }
      if (source instanceof Error) {
        const name = String(source.name);
        const Type = Object.prototype.hasOwnProperty.call(ERROR_TYPES, name) ? ERROR_TYPES[name] : Error;
        target = keep(new Type(String(source.message)));
        if (typeof source.stack === "string") Object.defineProperty(target, "stack", { value: source.stack, writable: true, configurable: true });
        return target;
      }
      if (source instanceof Boolean || source instanceof Number || source instanceof String || source instanceof BigInt) {
        return keep(Object(source.valueOf()));
      }
      if (source instanceof Promise || source instanceof WeakMap || source instanceof WeakSet ||
          (typeof WeakRef === "function" && source instanceof WeakRef)) {
        throw refuse("a " + Object.prototype.toString.call(source).slice(8, -1));
      }
      target = keep({});
      for (const key of Object.keys(source)) target[key] = copy(source[key]);
      return target;
    }
    return copy(value);
  }

  return { atob, btoa, TextEncoder, TextDecoder, structuredClone };
})`;

/** Names of the globals {@link WEB_GLOBALS_SOURCE} makes. */
export const WEB_GLOBAL_NAMES = ["atob", "btoa", "TextEncoder", "TextDecoder", "structuredClone"];

/** TypeScript declarations of {@link WEB_GLOBALS_SOURCE}'s globals, for the type-checker. */
export const WEB_GLOBALS_DECLARATIONS = `
declare function atob(data: string): string;
declare function btoa(data: string): string;
declare class TextEncoder {
  readonly encoding: "utf-8";
  encode(input?: string): Uint8Array;
  encodeInto(source: string, destination: Uint8Array): { read: number; written: number };
}
declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean; ignoreBOM?: boolean });
  readonly encoding: "utf-8";
  readonly fatal: boolean;
  readonly ignoreBOM: boolean;
  decode(input?: ArrayBuffer | ArrayBufferView, options?: { stream?: false }): string;
}
declare function structuredClone<T>(value: T): T;
`;
