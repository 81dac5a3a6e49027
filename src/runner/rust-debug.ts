/**
 * Rust's `Debug` formatting of a string (`format!("{s:?}")`), which seed 003's
 * `command_summary` uses to quote a command argument that holds whitespace.
 *
 * Compared with rustc 1.95's `<str as Debug>::fmt` on every one of the 1,112,064 Unicode scalar
 * values, one at a time, with no difference (test/runner/process.test.ts keeps a sample):
 * - the string is wrapped in `"`;
 * - `"` and `\` get a backslash; NUL, tab, line feed and carriage return are written `\0`, `\t`,
 *   `\n`, `\r`;
 * - every other character Rust does not print as itself is written `\u{hex}` (lowercase hex, no
 *   leading zeros): control characters (Cc), format characters (Cf, e.g. U+200B, U+FEFF),
 *   private use (Co), unassigned code points (Cn), line and paragraph separators (Zl, Zp), space
 *   separators other than the ASCII space (Zs, e.g. U+00A0), and grapheme extenders (combining
 *   marks such as U+0301), wherever they stand in the string;
 * - everything else (letters, digits, punctuation, symbols, emoji, CJK, ...) is written as is.
 * The categories come from the JavaScript engine's Unicode tables (Node 24: Unicode 17); should
 * Rust's tables and the engine's differ by a Unicode version, only code points assigned in
 * between would be written differently.
 * A lone UTF-16 surrogate (which a Rust `String` cannot hold) is written `\u{d800}`-style.
 *
 * @module
 */

const ESCAPED_AS_UNICODE =
  /^(?:[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Grapheme_Extend}]|(?! )\p{Zs})$/u;

/** The short escapes Rust's `char::escape_debug` writes instead of `\u{..}`. */
const SHORT_ESCAPES: Readonly<Record<string, string>> = {
  "\0": "\\0",
  "\t": "\\t",
  "\n": "\\n",
  "\r": "\\r",
  '"': '\\"',
  "\\": "\\\\",
};

/**
 * `format!("{value:?}")` for a Rust `&str`: the quoted, escaped form described in this module's
 * documentation. Never throws.
 *
 * @example rustDebugString('say "hi"\n') === '"say \\"hi\\"\\n"'
 */
export function rustDebugString(value: string): string {
  let out = '"';
  for (const char of value) {
    const short = SHORT_ESCAPES[char];
    if (short !== undefined) out += short;
    else if (ESCAPED_AS_UNICODE.test(char)) out += `\\u{${char.codePointAt(0)!.toString(16)}}`;
    else out += char;
  }
  return `${out}"`;
}
