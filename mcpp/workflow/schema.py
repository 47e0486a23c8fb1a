"""The schema of a workflow file, and its validation errors in the file's own terms.

:class:`File` is what a workflow document must look like (TOML, JSON and YAML alike), decoded
with ``msgspec.convert``; :func:`validation_error` turns msgspec's ``Expected ... - at
`$.steps[2].timeout``` into a :class:`~mcpp.errors.WorkflowError` naming the step and the
field, with the allowed keys (or the closest one) for an unknown key.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any

import msgspec

from mcpp.errors import WorkflowError
from mcpp.workflow.limits import Backoff, Count, Int64, Retries, Seconds, Timeout, Workers
from mcpp.workflow.spec import ActorMode, FailurePolicy
from mcpp.workflow.templates import Include

__all__ = ["SUBSTITUTED_TYPES", "File", "FileStep", "FileWorkflow", "validation_error"]


class FileWorkflow(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    max_concurrent: Count | None = None
    on_failure: FailurePolicy = "continue"
    actors: ActorMode = "per_step"
    workers: Workers | None = None
    scheduler: str | None = None
    version: str | None = None
    description: str = ""


class FileStep(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    run: str
    args: dict[str, Any] = {}
    depends_on: list[str] = []
    timeout: Any = None  # these three may hold ${params}: typed by SUBSTITUTED_TYPES
    retries: Any = 0
    priority: Any = 0
    retry_delay: Seconds = 1.0
    retry_backoff: Backoff = 2.0
    retry_max_delay: Seconds = 60.0
    retry_on: list[str] = []
    deadline: Timeout | None = None
    isolate: bool = False
    uses: list[str] = []
    cache: bool | str = False


class File(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    workflow: FileWorkflow
    params: dict[str, Any] = {}
    resources: dict[str, Count] = {}
    include: list[Include] = []
    steps: Annotated[list[FileStep], msgspec.Meta(min_length=1)]


SUBSTITUTED_TYPES: dict[str, Any] = {
    "timeout": Timeout | None,
    "retries": Retries,
    "priority": Int64,
}

_ERROR_AT = re.compile(r"(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.DOTALL)
_PATH_PART = re.compile(r"\.(\w+)|\[(\d+)\]|\[\.\.\.\]")
_KEY_IN_MESSAGE = re.compile(r"Object (missing required|contains unknown) field `([^`]*)`")


def validation_error(exc: msgspec.ValidationError, raw: Any) -> WorkflowError:
    """Turn ``Expected ... - at `$.steps[2].timeout``` into step/field terms of the file."""
    match = _ERROR_AT.fullmatch(str(exc))
    assert match is not None  # the pattern matches any text
    message = match["message"]
    path: list[str | int] = []
    for part in _PATH_PART.finditer(match["path"] or ""):
        path.append(part[1] if part[1] else int(part[2]) if part[2] else "[...]")
    owner = list(path)
    key = _KEY_IN_MESSAGE.match(message)
    if key is not None:
        path.append(key[2])
        if key[1] == "missing required":
            message = f"missing required key {key[2]!r}"
        else:
            message = f"unknown key {key[2]!r}" + _allowed_keys(owner, key[2])
    else:
        message = message[:1].lower() + message[1:]
    step: str | None = None
    if path[:1] == ["steps"] and len(path) >= 3 and isinstance(path[1], int):
        step = _raw_step_id(raw, path[1])
        head = path[2:3] if step is not None else path[:3]
        rest = path[3:]
    else:
        head = path[:2] if path[:1] == ["workflow"] else path[:1]
        rest = path[len(head) :]
    if rest:
        message = f"{message} (at {_format_path(path[2:] if step is not None else path)})"
    return WorkflowError(message, step=step, field=_format_path(head) or None)


def _allowed_keys(owner: list[str | int], key: str) -> str:
    if not owner:
        struct: type[msgspec.Struct] = File
    elif owner == ["workflow"]:
        struct = FileWorkflow
    elif owner[0] == "steps" and len(owner) == 2:
        struct = FileStep
    else:
        return ""
    names = struct.__struct_fields__
    close = difflib.get_close_matches(key, names, n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(names)}"


def _raw_step_id(raw: Any, index: int) -> str | None:
    try:
        step_id = raw["steps"][index]["id"]
    except (KeyError, IndexError, TypeError):
        return None
    return step_id if isinstance(step_id, str) else None


def _format_path(path: list[str | int]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part == "[...]":
            text += part
        else:
            text += f".{part}" if text else part
    return text
