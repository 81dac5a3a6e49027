"""How the sandbox describes Python values and exceptions to the host: results converted to
what JSON can hold (noting each conversion), exceptions as type, message, position in the
cell and a traceback without the sandbox's own frames.

Executed once, as the module ``_sandbox_results``, while the base image is built, before
./prelude.py (the module ``_sandbox``) which uses it. Frames of both have the filename
``<sandbox>``.
"""

import dataclasses
import json
import math
import traceback

SANDBOX_FILE = "<sandbox>"
SAFE_INTEGER = 2**53 - 1
MAX_RESULT_DEPTH = 1_000
MAX_REPR_CHARS = 10_000


def syntax_error(error):
    """A SyntaxError as the host reads it."""
    line = error.lineno if isinstance(error.lineno, int) and error.lineno > 0 else None
    column = error.offset if isinstance(error.offset, int) and error.offset > 0 else None
    return {
        "type": type(error).__name__,
        "message": str(error.msg),
        "line": line,
        "column": column if line is not None else None,
        "traceback": "",
        "toolCode": None,
    }


def unique(items):
    """Items in order, each once."""
    seen = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def _position(name, source, tb):
    """Innermost position in the cell ``name``: 1-based line and code-point column."""
    found = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == name:
            found = tb
        tb = tb.tb_next
    if found is None:
        return None, None
    line = found.tb_lineno
    column = None
    try:
        positions = list(found.tb_frame.f_code.co_positions())
        start_line, _end_line, start_col, _end_col = positions[found.tb_lasti // 2]
        if start_line == line and start_col is not None:
            text = source.splitlines()[line - 1]
            column = len(text.encode("utf-8")[:start_col].decode("utf-8", "replace")) + 1
    except (IndexError, ValueError):
        column = None
    return line, column


def _filter_frames(exception):
    """Drops this module's frames from a TracebackException and the ones it chains."""
    seen = set()
    pending = [exception]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.stack = traceback.StackSummary.from_list(
            [frame for frame in current.stack if frame.filename != SANDBOX_FILE]
        )
        pending.append(current.__cause__)
        pending.append(current.__context__)
        pending.extend(getattr(current, "exceptions", None) or [])


def describe(name, source, error, tool_error):
    """An exception raised by the cell ``name`` (its text ``source``) as the host reads it."""
    if isinstance(error, SyntaxError) and error.filename == name and not error.__traceback__:
        return syntax_error(error)
    line, column = _position(name, source, error.__traceback__)
    try:
        summary = traceback.TracebackException(type(error), error, error.__traceback__, compact=True)
        _filter_frames(summary)
        text = "".join(summary.format())
    except BaseException:  # noqa: BLE001 - a broken __str__ must not hide the error itself
        text = f"{type(error).__name__}\n"
    try:
        message = str(error)
    except BaseException:  # noqa: BLE001
        message = "(an exception whose message could not be read)"
    code = getattr(error, "code", None) if isinstance(error, tool_error) else None
    return {
        "type": type(error).__name__,
        "message": message,
        "line": line,
        "column": column,
        "traceback": text,
        "toolCode": code if isinstance(code, str) else None,
    }


def _key(key, issues):
    if isinstance(key, str):
        return str(key)
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key) if not isinstance(key, float) or math.isfinite(key) else str(key)
    issues.append("a dict key that is not a string, as its str()")
    return _safe_repr(key, str)


def _safe_repr(value, fn=repr):
    try:
        text = fn(value)
    except Exception:  # noqa: BLE001 - a guest object's __repr__ may raise anything
        return f"<{type(value).__name__} object>"
    if len(text) > MAX_REPR_CHARS:
        text = text[:MAX_REPR_CHARS] + "…"
    return text


def to_json(value, issues, active, depth):
    """Converts a Python value into one JSON can hold; notes each conversion in ``issues``."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        number = int(value)
        if -SAFE_INTEGER <= number <= SAFE_INTEGER:
            return number
        issues.append("an integer beyond ±(2**53 - 1), as its digits in a string")
        return str(number)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        issues.append("NaN or infinity, as a string")
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, str):
        return str(value)
    if depth >= MAX_RESULT_DEPTH:
        issues.append(f"nesting deeper than {MAX_RESULT_DEPTH}, cut")
        return "[Too deep]"
    if id(value) in active:
        issues.append('a reference cycle, as "[Circular]"')
        return "[Circular]"
    active.add(id(value))
    try:
        if isinstance(value, dict):
            return {_key(k, issues): to_json(v, issues, active, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [to_json(item, issues, active, depth + 1) for item in value]
        if isinstance(value, (set, frozenset)):
            issues.append("a set, as an array")
            items = list(value)
            try:
                items.sort()
            except TypeError:
                pass
            return [to_json(item, issues, active, depth + 1) for item in items]
        if isinstance(value, (bytes, bytearray, memoryview)):
            issues.append("bytes, as their repr")
            return _safe_repr(bytes(value))
        if isinstance(value, BaseException):
            issues.append("an exception, as {type, message}")
            return {"type": type(value).__name__, "message": _safe_repr(value, str)}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            issues.append("a dataclass instance, as an object of its fields")
            return {
                field.name: to_json(getattr(value, field.name, None), issues, active, depth + 1)
                for field in dataclasses.fields(value)
            }
    finally:
        active.discard(id(value))
    issues.append(f"a {type(value).__name__}, as its repr")
    return _safe_repr(value)
