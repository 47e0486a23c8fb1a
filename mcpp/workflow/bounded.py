"""Reading workflow files in bounded time and memory: what a file may be, and how it is decoded.

:func:`read_document` is the only way mcpp reads a workflow file. It refuses anything that is
not a regular file before reading a byte (a FIFO would block forever, ``/dev/zero`` never
ends), reads at most :data:`~mcpp.workflow.limits.MAX_FILE_BYTES` + 1 bytes, requires UTF-8, and
checks
the shape of the text before a decoder sees it, so that no decoder recurses or loops beyond the
limits of :mod:`mcpp.workflow.limits`:

* TOML: a linear scan bounds the nesting of arrays and inline tables and the parts of a dotted
  key (Python's TOML parser is recursive, and quadratic in a dotted key's length);
* YAML: the event stream (libyaml's parser does not recurse) bounds the nesting and the number
  of values *with aliases expanded* (no "billion laughs"), and refuses an alias inside its own
  anchor (a self-referencing document); only then is the document built;
* JSON: msgspec's decoder stops at its recursion limit with an error.

The decoded document is then checked by :func:`mcpp.workflow.limits.find_violation` (depth, number
of
values, 64-bit integers, valid Unicode). Every problem is a :class:`~mcpp.errors.WorkflowError`
without the file (callers add it), naming the step and field when the problem lies in one.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Any

import msgspec
import msgspec.json
import msgspec.toml
import msgspec.yaml
import yaml

from mcpp.errors import WorkflowError
from mcpp.workflow.limits import (
    INT_MAX,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_VALUES,
    find_violation,
    format_path,
)

__all__ = [
    "FORMATS",
    "check_toml_shape",
    "check_yaml_events",
    "decode_document",
    "read_document",
    "read_file",
]

FORMATS: dict[str, str] = {".toml": "TOML", ".json": "JSON", ".yaml": "YAML", ".yml": "YAML"}

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TOML_SPECIAL = re.compile(rb"[\"'#\[\]{},=.\n]")
_BASIC_STRING_REST = re.compile(rb'(?:[^"\\\n]|\\.)*"')  # one alternative per char: linear
_OPEN, _CLOSE = frozenset(b"[{"), frozenset(b"]}")


def read_document(file: str) -> Any:
    """Read and decode the workflow file ``file`` (format by suffix) into plain data.

    Raises :class:`~mcpp.errors.WorkflowError` (without the file: callers add it) for an
    unknown suffix, a file that is not a readable regular file or is too big, text that is not
    UTF-8, invalid TOML/JSON/YAML, and content beyond the limits of :mod:`mcpp.workflow.limits`.
    """
    suffix = os.path.splitext(file)[1].lower()
    if suffix not in FORMATS:
        raise WorkflowError(
            f"unknown workflow file format {suffix or '(no suffix)'!r}: "
            "expected .toml, .json, .yaml or .yml"
        )
    return decode_document(read_file(file), FORMATS[suffix])


def read_file(file: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """Return the bytes of the regular file ``file``, at most ``limit`` of them.

    The file is checked with ``stat`` before it is opened and with ``fstat`` after (it is
    opened non-blocking, so a FIFO put in its place cannot block); at most ``limit + 1`` bytes
    are read. Raises :class:`~mcpp.errors.WorkflowError` when it cannot be read, is not a
    regular file (a folder, FIFO, socket or device) or has more than ``limit`` bytes.
    """
    try:
        mode = os.stat(file).st_mode
    except OSError as exc:
        raise WorkflowError(f"cannot read the workflow file: {exc.strerror or exc}") from None
    except ValueError as exc:  # a NUL in the path
        raise WorkflowError(f"cannot read the workflow file: {exc}") from None
    _check_regular(mode, file)
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise WorkflowError(f"cannot read the workflow file: {exc.strerror or exc}") from None
    try:
        _check_regular(os.fstat(fd).st_mode, file)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise WorkflowError(f"cannot read the workflow file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if size > limit:
        raise WorkflowError(f"the file is larger than the limit of {limit} bytes")
    return b"".join(chunks)


def decode_document(data: bytes, kind: str) -> Any:
    """Decode ``data`` as ``kind`` (``"TOML"``, ``"JSON"`` or ``"YAML"``) within the limits.

    Raises :class:`~mcpp.errors.WorkflowError` for text that is not UTF-8, invalid syntax,
    nesting, values or integers beyond :mod:`mcpp.workflow.limits`, and YAML aliases that refer to
    an
    enclosing node; the step and field are named when the problem lies inside one.
    """
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise WorkflowError(
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line} (offset {exc.start})"
        ) from None
    try:
        if kind == "TOML":
            check_toml_shape(data)
            doc = msgspec.toml.decode(data)
        elif kind == "YAML":
            check_yaml_events(data)
            doc = msgspec.yaml.decode(data)
        else:
            doc = msgspec.json.decode(data)
    except WorkflowError:
        raise
    except (msgspec.DecodeError, yaml.YAMLError, ValueError) as exc:
        message = " ".join(str(exc).replace(' in "<byte string>",', "").split())  # one line
        if "integer string conversion" in message:  # int() of 4300+ digits
            message = f"an integer of more than 4300 digits (limit: signed 64-bit, {INT_MAX})"
        raise WorkflowError(f"invalid {kind}: {message}") from None
    except RecursionError:
        raise WorkflowError(f"invalid {kind}: nested deeper than {MAX_DEPTH} levels") from None
    problem = find_violation(doc)
    if problem is not None:
        path, reason = problem
        raise _located(doc, path, reason)
    return doc


def check_toml_shape(data: bytes) -> None:
    """Raise :class:`~mcpp.errors.WorkflowError` if TOML ``data`` nests arrays and inline tables
    deeper than :data:`~mcpp.workflow.limits.MAX_DEPTH` or has a key of more parts than that.

    A scan in linear time that follows strings, comments, keys and values just far enough for
    valid TOML; where the text stops making sense (an unclosed string) it stops and leaves the
    error to the decoder.
    """
    stack: list[int] = []
    key_mode, parts, header = True, 1, False
    pos = 0
    while (found := _TOML_SPECIAL.search(data, pos)) is not None:
        at = found.start()
        char = data[at]
        pos = at + 1
        if char == ord("#"):
            pos = data.find(b"\n", pos)
            if pos < 0:
                return
        elif char in b"\"'":
            pos = _skip_toml_string(data, at)
            if pos < 0:
                return
        elif char == ord("\n"):
            if not stack:
                key_mode, parts, header = True, 1, False
        elif key_mode:
            if char == ord("."):
                parts += 1
                if parts > MAX_DEPTH:
                    raise _too_deep(data, at, f"a key has more than {MAX_DEPTH} dotted parts")
            elif char == ord("="):
                key_mode = False
            elif char == ord("[") and not stack and not header:
                header = True
                pos += data.startswith(b"[", pos)
            elif char == ord("]") and header:
                key_mode = header = False
                pos += data.startswith(b"]", pos)
            elif char == ord("}") and stack:
                stack.pop()
                key_mode = False
        elif char in _OPEN:
            stack.append(char)
            if len(stack) > MAX_DEPTH:
                raise _too_deep(data, at, f"arrays and tables nested deeper than {MAX_DEPTH}")
            if char == ord("{"):
                key_mode, parts = True, 1
        elif char in _CLOSE:
            if not stack:
                return
            stack.pop()
        elif char == ord(",") and stack and stack[-1] == ord("{"):
            key_mode, parts = True, 1


def check_yaml_events(data: bytes) -> None:
    """Raise :class:`~mcpp.errors.WorkflowError` if YAML ``data`` nests deeper than
    :data:`~mcpp.workflow.limits.MAX_DEPTH` or holds more than
    :data:`~mcpp.workflow.limits.MAX_VALUES` values
    (each alias counted as the whole node it stands for), or has an alias to an undefined or
    enclosing anchor. Reads libyaml's events only (no recursion); stops at the first problem.
    Raises :class:`yaml.YAMLError` for invalid YAML.
    """
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (values, height) of its node
    stack: list[list[Any]] = []  # open collections: [anchor, values, height]
    total = 0

    def close(anchor: str | None, values: int, height: int) -> None:
        if anchor is not None:
            anchors[anchor] = (values, height)
        if stack:
            stack[-1][1] += values
            stack[-1][2] = max(stack[-1][2], height + 1)

    for event in yaml.parse(data, Loader=_LOADER):
        if isinstance(event, yaml.DocumentStartEvent):
            anchors.clear()
        elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            total += 1
            stack.append([event.anchor, 1, 1])
            if len(stack) > MAX_DEPTH:
                raise WorkflowError(f"{_mark(event)}: nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            close(*stack.pop())
        elif isinstance(event, yaml.ScalarEvent):
            total += 1
            close(event.anchor, 1, 1)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in anchors:
                raise WorkflowError(
                    f"{_mark(event)}: alias *{event.anchor} refers to no complete node before "
                    "it (undefined, or an alias inside its own anchor)"
                )
            values, height = anchors[event.anchor]
            total += values
            if len(stack) + height > MAX_DEPTH:
                raise WorkflowError(
                    f"{_mark(event)}: alias *{event.anchor} nests deeper than {MAX_DEPTH} levels"
                )
            close(None, values, height)
        if total > MAX_VALUES:
            raise WorkflowError(
                f"{_mark(event)}: more than {MAX_VALUES} values (aliases counted expanded)"
            )


def _check_regular(mode: int, file: str) -> None:
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO, socket or device"
        raise WorkflowError(f"not a regular file ({kind}): refusing to read it")


def _skip_toml_string(data: bytes, at: int) -> int:
    """Return the position after the TOML string starting at ``at``, or -1 if it is unclosed."""
    quote = data[at : at + 1]
    if data.startswith(quote * 3, at):
        pos = at + 3
        while True:
            end = data.find(quote * 3, pos)
            if end < 0:
                return -1
            slashes = 0
            while quote == b'"' and end - slashes > pos and data[end - slashes - 1] == ord("\\"):
                slashes += 1
            if slashes % 2 == 0:
                end += 3
                for _ in range(2):  # up to two quotes may end the content: """a""""
                    end += data.startswith(quote, end)
                return end
            pos = end + 1
    if quote == b"'":
        end, newline = data.find(b"'", at + 1), data.find(b"\n", at + 1)
        return -1 if end < 0 or 0 <= newline < end else end + 1
    match = _BASIC_STRING_REST.match(data, at + 1)
    return -1 if match is None else match.end()


def _too_deep(data: bytes, at: int, reason: str) -> WorkflowError:
    line = data.count(b"\n", 0, at) + 1
    return WorkflowError(f"invalid TOML: {reason} (line {line})")


def _mark(event: Any) -> str:
    mark = event.start_mark
    return f"invalid YAML: line {mark.line + 1}, column {mark.column + 1}"


def _located(doc: Any, path: list[str | int], reason: str) -> WorkflowError:
    """A limit error at ``path`` of a document, in the loader's step/field terms."""
    step: str | None = None
    if path[:1] == ["steps"] and len(path) >= 3 and isinstance(path[1], int):
        raw_step = doc["steps"][path[1]]
        step_id = raw_step.get("id") if isinstance(raw_step, dict) else None
        if isinstance(step_id, str) and find_violation(step_id) is None:
            step, path = step_id, path[2:]
    elif path[:1] == ["workflow"] and len(path) >= 2:
        path = [f"workflow.{path[1]}", *path[2:]]
    if not path:
        return WorkflowError(reason)
    field, rest = str(path[0]), path[1:]
    shown = format_path(path[:8]) + ("..." if len(path) > 8 else "")
    where = f" (at {shown})" if rest else ""
    return WorkflowError(f"{reason}{where}", step=step, field=field)
