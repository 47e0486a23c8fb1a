"""Input limits: how large, deep and big the values of a workflow may be, in one place.

Every limit below keeps bad input from crashing, hanging or exhausting the process that reads
it, and keeps every accepted value within what the runtime can carry (msgspec encodes integers
of at most 64 bits; trio sleeps need finite durations):

* a workflow file has at most :data:`MAX_FILE_BYTES` bytes; a ``--param`` text at most
  :data:`MAX_PARAM_BYTES`;
* a document or value nests at most :data:`MAX_DEPTH` levels (tables, arrays, a TOML dotted
  key's parts) and holds at most :data:`MAX_VALUES` values, YAML aliases counted expanded;
* an integer is a signed 64-bit one (:data:`INT_MIN` .. :data:`INT_MAX`); a string is valid
  Unicode (no lone surrogates), so it encodes as UTF-8;
* a duration (``timeout``, ``retry_delay``, ``retry_max_delay``, ``deadline``) is finite and at
  most :data:`MAX_SECONDS` (a week); ``retry_backoff`` at most :data:`MAX_BACKOFF`;
  ``workers`` at most :data:`MAX_WORKERS` (each is a process);
* a parameter ``pattern`` has at most :data:`MAX_PATTERN_CHARS` characters.

The annotated types carry these bounds for msgspec; :func:`find_violation` checks a decoded
value without recursion.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "MAX_BACKOFF",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_PARAM_BYTES",
    "MAX_PATTERN_CHARS",
    "MAX_SECONDS",
    "MAX_VALUES",
    "MAX_WORKERS",
    "Backoff",
    "Count",
    "Int64",
    "Retries",
    "Seconds",
    "Timeout",
    "Workers",
    "find_violation",
    "format_path",
]

MAX_FILE_BYTES = 1 << 20
MAX_PARAM_BYTES = 1 << 16
MAX_DEPTH = 64
MAX_VALUES = 200_000
INT_MIN = -(1 << 63)
INT_MAX = (1 << 63) - 1
MAX_SECONDS = 7 * 24 * 3600.0
MAX_BACKOFF = 1000.0
MAX_WORKERS = 1024
MAX_PATTERN_CHARS = 1000

Int64 = Annotated[int, msgspec.Meta(ge=INT_MIN, le=INT_MAX)]
Count = Annotated[int, msgspec.Meta(ge=1, le=INT_MAX)]
Retries = Annotated[int, msgspec.Meta(ge=0, le=INT_MAX)]
Workers = Annotated[int, msgspec.Meta(ge=1, le=MAX_WORKERS)]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)]
Timeout = Annotated[float, msgspec.Meta(gt=0, le=MAX_SECONDS)]
Backoff = Annotated[float, msgspec.Meta(ge=1, le=MAX_BACKOFF)]

Path = list[str | int]


def find_violation(value: Any, *, max_values: int = MAX_VALUES) -> tuple[Path, str] | None:
    """Return ``(path, reason)`` for the first part of ``value`` that breaks a limit, else None.

    Walks dicts, lists and tuples (without recursion, so any depth is safe to check) and
    reports: nesting deeper than :data:`MAX_DEPTH`, more than ``max_values`` values in all, an
    int outside signed 64 bits, a str (value or key) that is not valid Unicode. ``path`` holds
    the keys and indexes from ``value`` down to the offending part. Raises nothing.
    """
    count = 0
    # each entry: (value, depth, parent entry, key in parent); parents rebuild the path
    stack: list[tuple[Any, int, Any, str | int | None]] = [(value, 0, None, None)]
    while stack:
        entry = stack.pop()
        item, depth, _, _ = entry
        count += 1
        reason = _scalar_problem(item)
        if count > max_values:
            reason = f"more than {max_values} values"
        elif depth > MAX_DEPTH:
            reason = f"nested deeper than {MAX_DEPTH} levels"
        if reason is not None:
            return _path_of(entry), reason
        if isinstance(item, dict):
            for key, child in item.items():
                problem = _scalar_problem(key)
                if problem is not None:
                    return _path_of(entry), f"a key: {problem}"
                stack.append((child, depth + 1, entry, key if isinstance(key, str) else str(key)))
        elif isinstance(item, list | tuple):
            stack.extend((child, depth + 1, entry, i) for i, child in enumerate(item))
    return None


def format_path(path: Path) -> str:
    """``["steps", 2, "args", "x"]`` as ``steps[2].args.x``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _scalar_problem(item: Any) -> str | None:
    if isinstance(item, bool):
        return None
    if isinstance(item, int) and not INT_MIN <= item <= INT_MAX:
        return f"integer out of range (signed 64-bit: {INT_MIN} .. {INT_MAX})"
    if isinstance(item, str) and not item.isascii():
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            return f"string {item[:40]!r} is not valid Unicode (a lone surrogate)"
    return None


def _path_of(entry: tuple[Any, int, Any, str | int | None]) -> Path:
    parts: Path = []
    while entry[2] is not None:
        key = entry[3]
        assert key is not None  # only the root has no key
        parts.append(key)
        entry = entry[2]
    return parts[::-1]
