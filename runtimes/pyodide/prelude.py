"""The sandbox side of one Pyodide session: runs cells, calls tools, captures output, and
turns results and exceptions into data for the host.

It is executed once, as the module ``_sandbox``, while the base image (the memory snapshot
every interpreter is restored from) is built; ``attach`` connects it to the JavaScript
bridge of the interpreter thread after each restore (./interpreter.ts). Nothing here is a
security boundary: the guest can reach and change this module. Limits are enforced by the
supervisor around the interpreter (./child.ts) and by the server.

Frames of this module and of ./prelude_results.py (``_sandbox_results``, how values and
exceptions are described to the host), filename ``<sandbox>``, are left out of the
tracebacks users see.
"""

import ast
import asyncio
import builtins
import inspect
import io
import json
import linecache
import os
import random
import signal
import sys
import time

from _sandbox_results import MAX_RESULT_DEPTH, describe, syntax_error, to_json, unique

_ASYNC_FLAGS = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE | inspect.CO_ASYNC_GENERATOR
_COMPILE_FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
_KEPT_CELLS = 64

_bridge = None
_real_sleep = time.sleep
_globals = {"__name__": "__main__", "__builtins__": builtins, "__doc__": None}
_published = {}
_tools_version = None
_cell_sources = []
_unawaited = []
_random_seeded = False


class ToolError(Exception):
    """A tool call failed. ``code`` is the error code (UPPER_SNAKE), ``status`` the call's
    status (``error``, ``timeout``, ``denied``), ``tool`` the tool's name."""

    def __init__(self, message, code="TOOL_ERROR", status="error", tool=None):
        super().__init__(message)
        self.code = code
        self.status = status
        self.tool = tool


class ToolPermissionError(ToolError, PermissionError):
    """A tool call was denied (unknown tool, over the call budget, request too large)."""


# Shown as builtins (where the guest finds them), not as this module's.
ToolError.__module__ = "builtins"
ToolPermissionError.__module__ = "builtins"


class _Tools:
    """Every tool as an attribute: ``tools.kv_get("k")``."""

    def __repr__(self):
        return "<tools: " + ", ".join(sorted(_published)) + ">"

    def __dir__(self):
        return sorted(_published)


tools = _Tools()


class _Stream(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr``: text goes to the host's capture."""

    def __init__(self, fd, name):
        super().__init__()
        self._fd = fd
        self._name = name

    @property
    def name(self):
        return self._name

    @property
    def encoding(self):
        return "utf-8"

    @property
    def errors(self):
        return "strict"

    def writable(self):
        return True

    def isatty(self):
        return False

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            _bridge.write(self._fd, text)
        return len(text)

    def flush(self):
        pass


def _sleep(seconds):
    """``time.sleep`` that the run's limits can interrupt."""
    if not isinstance(seconds, (int, float)):
        seconds = float(seconds)
    if seconds != seconds or seconds < 0:
        raise ValueError("sleep length must be non-negative")
    if not _bridge.sleep(float(seconds)):
        raise KeyboardInterrupt


def attach(bridge):
    """Connects this module to the interpreter thread's bridge (after a restore)."""
    global _bridge
    _bridge = bridge
    sys.stdout = _Stream(1, "<stdout>")
    sys.stderr = _Stream(2, "<stderr>")
    time.sleep = _sleep
    # Every interpreter starts from the same image: give each its own random state (a
    # session's first run seeds it again, from the run's seed).
    random.seed()


def restored():
    """Runs once this session has been loaded from an image into another interpreter: the
    tools of the server there are synced afresh at the next run."""
    global _tools_version
    _tools_version = None


def warm_up():
    """Runs a throwaway cell (result, exception, traceback) in a scratch namespace, so that a
    session's first run finds the interpreter's code paths compiled and warm."""
    scratch = {"__name__": "__warm_up__", "__builtins__": builtins}
    source = "import json\nvalue = json.loads(json.dumps({'a': [1, 2.5, 'x']}))\nvalue['a'][0] + 1"
    cell = _compile(source, "<warm-up>")
    exec(cell.body, scratch)
    _done(cell, eval(cell.last, scratch))
    try:
        eval(compile("missing_name", "<warm-up>", "eval"), scratch)
    except NameError as error:
        _failed(cell, error)
    json.dumps(run(json.dumps({"code": "1 + 1", "cellName": "<warm-up>", "inputsJson": "{}", "validateOnly": True, "toolNames": [], "toolsVersion": None, "stackDepth": 100})))


def _prepare_image(preload):
    """Runs while the base image is built: imports what every session starts with."""
    for name in preload:
        __import__(name)
    os.environ.pop("_", None)
    builtins.ToolError = ToolError
    builtins.ToolPermissionError = ToolPermissionError
    builtins.tools = tools


def _encode_arguments(name, value, what):
    try:
        return json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise TypeError(f"{what} of {name}() are not JSON: {error}") from None


def _finish_call(name, reply_text):
    reply = json.loads(reply_text)
    if reply.get("ok"):
        return reply["value"]
    if reply.get("stop"):
        raise KeyboardInterrupt
    cls = ToolPermissionError if reply["status"] == "denied" else ToolError
    raise cls(reply["message"], code=reply["code"], status=reply["status"], tool=name)


class _ToolCall:
    """A tool call started from async code: await it for the value."""

    __slots__ = ("_name", "_promise", "_awaited")

    def __init__(self, name, args_json, kwargs_json):
        self._name = name
        self._promise = _bridge.call_async(name, args_json, kwargs_json)
        self._awaited = False
        _unawaited.append(self)

    def __await__(self):
        self._awaited = True
        reply_text = yield from self._promise.__await__()
        return _finish_call(self._name, reply_text)

    def __repr__(self):
        return f"<call of tool {self._name}(); await it for its value>"


def _make_tool(name):
    def tool(*args, **kwargs):
        args_json = _encode_arguments(name, list(args), "arguments")
        kwargs_json = _encode_arguments(name, kwargs, "keyword arguments")
        if sys._getframe(1).f_code.co_flags & _ASYNC_FLAGS:
            return _ToolCall(name, args_json, kwargs_json)
        return _finish_call(name, _bridge.call_sync(name, args_json, kwargs_json))

    tool.__name__ = name
    tool.__qualname__ = name
    tool.__doc__ = (
        f"Calls the host tool '{name}' with positional and keyword arguments (JSON values). "
        "From synchronous code it blocks and returns the value; from async code (an async "
        "def, or a cell using await) it returns an awaitable."
    )
    return tool


def _sync_tools(names, version):
    global _tools_version
    if version == _tools_version:
        return
    _tools_version = version
    wanted = set(names)
    for name in list(_published):
        if name not in wanted:
            fn = _published.pop(name)
            if getattr(builtins, name, None) is fn:
                delattr(builtins, name)
            if getattr(tools, name, None) is fn:
                delattr(tools, name)
    for name in names:
        if name in _published:
            continue
        fn = _make_tool(name)
        _published[name] = fn
        setattr(tools, name, fn)
        if not hasattr(builtins, name):
            setattr(builtins, name, fn)


def _noop():
    pass


def _clear_pending_interrupt():
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for _ in range(2):
        try:
            _noop()
        except KeyboardInterrupt:
            pass


def _remember_source(name, source):
    lines = source.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    linecache.cache[name] = (len(source), None, lines, name)
    _cell_sources.append(name)
    while len(_cell_sources) > _KEPT_CELLS:
        linecache.cache.pop(_cell_sources.pop(0), None)


class _Cell:
    __slots__ = ("name", "source", "body", "last")

    def __init__(self, name, source, body, last):
        self.name = name
        self.source = source
        self.body = body
        self.last = last


def _compile(source, name):
    """Compiles a cell: the statements, and its last expression statement separately."""
    # Compiling the text first reports syntax errors with positions in code points.
    compile(source, name, "exec", _COMPILE_FLAGS, dont_inherit=True)
    tree = compile(source, name, "exec", _COMPILE_FLAGS | ast.PyCF_ONLY_AST, dont_inherit=True)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not _suppressed(source, tree.body[-1]):
        last = ast.Expression(tree.body.pop().value)
        last = compile(last, name, "eval", _COMPILE_FLAGS, dont_inherit=True)
    body = compile(tree, name, "exec", _COMPILE_FLAGS, dont_inherit=True) if tree.body else None
    return _Cell(name, source, body, last)


def _suppressed(source, node):
    """A trailing ``;`` after the last expression hides its value, as in Jupyter."""
    lines = source.splitlines()
    if node.end_lineno is None or node.end_lineno > len(lines):
        return False
    rest = lines[node.end_lineno - 1].encode("utf-8")[node.end_col_offset :].decode("utf-8", "replace")
    return rest.lstrip().startswith(";")


def run(request_json):
    """Runs (or validates) one cell. Answers the outcome as JSON text, or, for a cell that
    awaits, a Task whose result is that text."""
    request = json.loads(request_json)
    _clear_pending_interrupt()
    _sync_tools(request["toolNames"], request["toolsVersion"])
    _unawaited.clear()
    name = request["cellName"]
    source = request["code"]
    try:
        cell = _compile(source, name)
    except (SyntaxError, ValueError) as error:
        if isinstance(error, SyntaxError):
            return json.dumps({"end": "syntax_error", "error": syntax_error(error)})
        return json.dumps(
            {
                "end": "syntax_error",
                "error": {"type": "SyntaxError", "message": str(error), "line": None, "column": None, "traceback": "", "toolCode": None},
            }
        )
    if request["validateOnly"]:
        return json.dumps({"end": "ok", "result": None, "issues": []})
    _remember_source(name, source)
    global _random_seeded
    if not _random_seeded:
        # The session's first executed run seeds ``random`` from its seed (derived by the host,
        # ./pinned.ts); from then on it goes on like any Python program's, so ``random.seed(42)``
        # in one cell holds for the next, and a journal replays the same numbers.
        random.seed(int(request["randomSeed"], 16))
        _random_seeded = True
    _globals.update(json.loads(request["inputsJson"]))
    limit = request["stackDepth"]
    if (cell.body and cell.body.co_flags & _ASYNC_FLAGS) or (cell.last and cell.last.co_flags & _ASYNC_FLAGS):
        return asyncio.ensure_future(_execute_async(cell, limit))
    return _execute_sync(cell, limit)


def _depth():
    frame = sys._getframe(1)
    depth = 0
    while frame is not None:
        depth += 1
        frame = frame.f_back
    return depth


def _execute_sync(cell, limit):
    try:
        sys.setrecursionlimit(_depth() + limit)
        if cell.body is not None:
            exec(cell.body, _globals)
        value = eval(cell.last, _globals) if cell.last is not None else None
        sys.setrecursionlimit(_depth() + MAX_RESULT_DEPTH + 100)
        return _done(cell, value)
    except BaseException as error:
        sys.setrecursionlimit(_depth() + MAX_RESULT_DEPTH + 100)
        return _failed(cell, error)


async def _execute_async(cell, limit):
    try:
        sys.setrecursionlimit(_depth() + limit)
        if cell.body is not None:
            pending = eval(cell.body, _globals)
            if cell.body.co_flags & _ASYNC_FLAGS:
                await pending
        value = None
        if cell.last is not None:
            value = eval(cell.last, _globals)
            if cell.last.co_flags & _ASYNC_FLAGS:
                value = await value
        sys.setrecursionlimit(_depth() + MAX_RESULT_DEPTH + 100)
        return _done(cell, value)
    except BaseException as error:
        sys.setrecursionlimit(_depth() + MAX_RESULT_DEPTH + 100)
        return _failed(cell, error)


def settle():
    """After a run: cancels tasks it left pending and warns about tool calls never awaited.
    Answers the number of tasks cancelled."""
    for call in _unawaited:
        if not call._awaited:
            sys.stderr.write(
                f"Warning: a call of {call._name}() from async code was never awaited; "
                "it ran, but its value was dropped.\n"
            )
    _unawaited.clear()
    loop = asyncio.get_event_loop()
    cancelled = 0
    for task in asyncio.all_tasks(loop):
        if not task.done():
            task.cancel()
            cancelled += 1
    return cancelled


def _done(cell, value):
    if cell.last is None:
        return json.dumps({"end": "ok", "result": None, "issues": []})
    issues = []
    converted = to_json(value, issues, set(), 0)
    try:
        text = json.dumps(converted, ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        text = json.dumps(repr(error))
        issues.append("a value the encoder refused, as a message")
    return json.dumps({"end": "ok", "result": text, "issues": unique(issues)})


def _failed(cell, error):
    described = describe(cell.name, cell.source, error, ToolError)
    return json.dumps({"end": "exception", "error": described})
