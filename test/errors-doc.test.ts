import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ERROR_CODES } from "../src/index.ts";

const doc = readFileSync(new URL("../docs/errors.md", import.meta.url), "utf8");
const rows = [
  ...doc.matchAll(/^\|\s*`([A-Z][A-Z0-9_]+)`\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|$/gm),
].map((match) => ({
  code: match[1]!,
  second: match[2]!.trim(),
}));

describe("docs/errors.md", () => {
  it("lists every code of the registry with its HTTP status", () => {
    for (const [code, info] of Object.entries(ERROR_CODES)) {
      const row = rows.find((candidate) => candidate.code === code);
      expect(row, `${code} is missing from docs/errors.md`).toBeDefined();
      expect(row!.second, `${code}'s HTTP status`).toBe(
        info.http === null ? "—" : String(info.http),
      );
    }
  });

  it("lists no code the service does not have (tool-defined codes aside)", () => {
    const toolCodes = rows.filter((row) => !/^(—|\d{3})$/.test(row.second)).map((row) => row.code);
    expect(toolCodes).toEqual([
      "KV_QUOTA_EXCEEDED",
      "KV_BAD_TTL",
      "FILE_NOT_TEXT",
      "HTTP_URL_NOT_ALLOWED",
      "HTTP_METHOD_NOT_ALLOWED",
      "HTTP_HEADER_NOT_ALLOWED",
      "HTTP_FETCH_FAILED",
      "HTTP_RESPONSE_TOO_LARGE",
      "SQL_ERROR",
      "SQL_MULTIPLE_STATEMENTS",
      "SQL_TOO_MANY_ROWS",
      "SQL_DATABASE_LOST",
    ]);
    for (const row of rows) {
      if (toolCodes.includes(row.code)) continue;
      expect(
        Object.keys(ERROR_CODES),
        `${row.code} is documented but not in src/errors.ts`,
      ).toContain(row.code);
    }
  });
});
