/**
 * RFC 3339 date-times exactly as seed 003's `#[serde(with = "time::serde::rfc3339")]` fields
 * carry them: the `time` crate's well-known `Rfc3339` format (checked against time 0.3.9's
 * `formatting/formattable.rs` and `parsing/parsable.rs`, and by running it).
 *
 * Written: `YYYY-MM-DDTHH:MM:SS[.F]Z` for UTC, `±HH:MM` in place of `Z` for another offset.
 * The fraction appears only when the nanosecond is not zero and is written with its trailing
 * zeros removed (1 to 9 digits): the epoch is `1970-01-01T00:00:00Z`, half a second past it
 * `1970-01-01T00:00:00.5Z`, 123 ms `...00.123Z`, 120 ms `...00.12Z`. Years outside 0000–9999
 * cannot be written.
 *
 * Read: the same shape with `T`/`t` and `Z`/`z`, a fraction of any length (digits past the
 * ninth are ignored), an offset of at most ±23:59, a real calendar date, and a leap second
 * (`:60`) only at 23:59 UTC on a month's last day, read as `23:59:59.999999999` as `time` does.
 *
 * @module
 */

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

const MS_PER_DAY = 86_400_000;

/** The parts of an RFC 3339 date-time, as `time::OffsetDateTime` holds them. */
interface DateTimeParts {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  /** 0–999,999,999. */
  nanosecond: number;
  /** Offset from UTC in minutes (−1,439 to 1,439). */
  offsetMinutes: number;
}

function isLeapYear(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return isLeapYear(year) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `days_from_civil`). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const dayOfEra =
    yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146_097 + dayOfEra - 719_468;
}

function parseParts(text: string): DateTimeParts | null {
  const match = RFC3339.exec(text);
  if (!match) return null;
  const [, y, mo, d, h, mi, s, fraction, zulu, sign, oh, om] = match;
  const parts: DateTimeParts = {
    year: Number(y),
    month: Number(mo),
    day: Number(d),
    hour: Number(h),
    minute: Number(mi),
    second: Number(s),
    nanosecond: fraction ? Number(fraction.slice(0, 9).padEnd(9, "0")) : 0,
    offsetMinutes: 0,
  };
  if (parts.month < 1 || parts.month > 12) return null;
  if (parts.day < 1 || parts.day > daysInMonth(parts.year, parts.month)) return null;
  if (parts.hour > 23 || parts.minute > 59 || parts.second > 60) return null;
  if (!zulu) {
    const hours = Number(oh);
    const minutes = Number(om);
    if (hours > 23 || minutes > 59) return null;
    parts.offsetMinutes = (sign === "-" ? -1 : 1) * (hours * 60 + minutes);
  }
  if (parts.second === 60) {
    // A leap second is real only at the end of a UTC day that ends a month.
    const utcMs = epochMsOf({ ...parts, second: 59, nanosecond: 0 });
    const utc = new Date(utcMs);
    const nextDay = new Date(utcMs + 1_000);
    if (utc.getUTCHours() !== 23 || utc.getUTCMinutes() !== 59 || nextDay.getUTCDate() !== 1) {
      return null;
    }
    parts.second = 59;
    parts.nanosecond = 999_999_999;
  }
  return parts;
}

function epochMsOf(parts: DateTimeParts): number {
  const days = daysFromCivil(parts.year, parts.month, parts.day);
  const msOfDay = ((parts.hour * 60 + parts.minute) * 60 + parts.second) * 1_000;
  return (
    days * MS_PER_DAY +
    msOfDay +
    Math.floor(parts.nanosecond / 1_000_000) -
    parts.offsetMinutes * 60_000
  );
}

const pad = (value: number, width: number) => String(value).padStart(width, "0");

function fractionOf(nanosecond: number): string {
  return nanosecond === 0 ? "" : `.${pad(nanosecond, 9).replace(/0+$/, "")}`;
}

/**
 * Writes a Unix epoch time in milliseconds as `time::serde::rfc3339` writes an
 * `OffsetDateTime` in UTC, e.g. `0` → `"1970-01-01T00:00:00Z"`,
 * `1_700_000_000_120` → `"2023-11-14T22:13:20.12Z"`. A fraction of a millisecond is dropped.
 *
 * @throws RangeError when the time is not finite or its year is outside 0000–9999 (the `time`
 *   crate refuses to write those too).
 */
export function formatRfc3339(epochMs: number): string {
  const date = new Date(epochMs);
  const year = date.getUTCFullYear();
  if (!Number.isFinite(epochMs) || Number.isNaN(year) || year < 0 || year > 9_999) {
    throw new RangeError(`${epochMs} ms is not a time RFC 3339 can write (years 0000–9999).`);
  }
  return `${date.toISOString().slice(0, 19)}${fractionOf(date.getUTCMilliseconds() * 1_000_000)}Z`;
}

/**
 * Reads an RFC 3339 date-time as `time::serde::rfc3339` does and writes it back as it would:
 * upper-case `T` and `Z`, the fraction without trailing zeros (nanoseconds at most), `Z` for a
 * zero offset, other offsets kept (`"2024-01-01t12:34:56.500+00:00"` →
 * `"2024-01-01T12:34:56.5Z"`; `"2024-01-01T12:34:56-05:30"` stays as it is).
 *
 * @returns the canonical text, or `null` when `text` is not a date-time the crate would read.
 */
export function normalizeRfc3339(text: string): string | null {
  const parts = parseParts(text);
  if (!parts) return null;
  const offset =
    parts.offsetMinutes === 0
      ? "Z"
      : `${parts.offsetMinutes < 0 ? "-" : "+"}${pad(Math.floor(Math.abs(parts.offsetMinutes) / 60), 2)}:${pad(Math.abs(parts.offsetMinutes) % 60, 2)}`;
  return (
    `${pad(parts.year, 4)}-${pad(parts.month, 2)}-${pad(parts.day, 2)}` +
    `T${pad(parts.hour, 2)}:${pad(parts.minute, 2)}:${pad(parts.second, 2)}` +
    `${fractionOf(parts.nanosecond)}${offset}`
  );
}

/**
 * The Unix epoch time in milliseconds (sub-millisecond digits dropped toward the past) of an
 * RFC 3339 date-time, or `null` when `text` is not one the `time` crate would read.
 */
export function rfc3339ToEpochMs(text: string): number | null {
  const parts = parseParts(text);
  return parts ? epochMsOf(parts) : null;
}
