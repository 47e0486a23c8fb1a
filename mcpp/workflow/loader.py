"""Workflow files: load and validate them into a :class:`~mcpp.workflow.spec.WorkflowSpec`.

A workflow file is TOML, JSON or YAML (chosen by the suffix: ``.toml``, ``.json``, ``.yaml``,
``.yml``), all with the same schema: a ``workflow`` table, optional ``params`` and ``resources``
tables and a ``steps`` array (see DESIGN.md, "Workflow files").

Everything is checked before anything runs, and each problem raises
:class:`~mcpp.errors.WorkflowError` naming the file, the step and the field: unknown keys, wrong
types, missing or out-of-range values, invalid or duplicate step ids, unknown dependencies and
cycles (via :mod:`mcpp.dag`), unresolvable ``run`` targets (the target is imported, via
:mod:`mcpp.workflow.targets`), step functions that cannot take their arguments, and undefined or
mistyped
parameters.

Parameters: ``${name}`` in a step's ``args`` (at any depth), ``timeout``, ``retries`` and
``priority`` is replaced by the parameter's value. A string that is exactly one placeholder
becomes the value itself, keeping its type (``"${rows}"`` becomes the int ``1000``); inside a
longer string a str value is inserted as is and any other value as JSON (``true``, ``[1, 2]``).
``$${`` stands for a literal ``${``. Typed parameters are described in :mod:`mcpp.workflow.params`;
``[workflow] version``, ``description`` and ``[[include]]`` (steps of other workflows under a
prefix, composed then validated as a whole) in :mod:`mcpp.workflow.templates`.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import keyword
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any

import msgspec
import msgspec.json

from mcpp import dag
from mcpp.cache.model import parse_ttl
from mcpp.errors import WorkflowError
from mcpp.workflow import targets
from mcpp.workflow.bounded import read_document
from mcpp.workflow.limits import Backoff, Count, Int64, Retries, Seconds, Timeout, Workers
from mcpp.workflow.params import parse_param_texts, parse_value, resolve_params
from mcpp.workflow.spec import ActorMode, FailurePolicy, StepSpec, WorkflowSpec, check_spec
from mcpp.workflow.templates import Include, Version, include_steps

__all__ = ["dump_plan", "load_workflow_spec", "parse_param_overrides"]


class _FileWorkflow(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    max_concurrent: Count | None = None
    on_failure: FailurePolicy = "continue"
    actors: ActorMode = "per_step"
    workers: Workers | None = None
    scheduler: str | None = None
    version: str | None = None
    description: str = ""


class _FileStep(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    run: str
    args: dict[str, Any] = {}
    depends_on: list[str] = []
    timeout: Any = None  # these three may hold ${params}: typed by _SUBSTITUTED_TYPES
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


class _File(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    workflow: _FileWorkflow
    params: dict[str, Any] = {}
    resources: dict[str, Count] = {}
    include: list[Include] = []
    steps: Annotated[list[_FileStep], msgspec.Meta(min_length=1)]


_SUBSTITUTED_TYPES: dict[str, Any] = {
    "timeout": Timeout | None,
    "retries": Retries,
    "priority": Int64,
}

_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_WHOLE_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_ERROR_AT = re.compile(r"(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.DOTALL)
_PATH_PART = re.compile(r"\.(\w+)|\[(\d+)\]|\[\.\.\.\]")
_KEY_IN_MESSAGE = re.compile(r"Object (missing required|contains unknown) field `([^`]*)`")


def load_workflow_spec(
    path: str | os.PathLike[str], params: Mapping[str, Any] | None = None
) -> WorkflowSpec:
    """Load, validate and return the workflow in the file ``path``.

    ``params`` overrides declared parameters: each must be declared in the file, and where the
    declared default is a bool, int or float the override must have that type (an int is
    accepted for a float). The result has every placeholder substituted, ``source`` set to
    ``path`` as given, ``params`` set to the values used and ``import_paths`` set to the file's
    folder and the current working directory (absolute), which are also added to
    :data:`sys.path` while the ``run`` targets are imported.

    Raises :class:`~mcpp.errors.WorkflowError` (``CycleError`` for a cycle) naming the file, the
    step and the field for any invalid content (values beyond :mod:`mcpp.workflow.limits` included),
    and also when the file cannot be read, is not a regular file, is too big or its suffix is
    not a known format (see :mod:`mcpp.workflow.bounded`). Importing a step's module runs that
    module's
    top-level code: a workflow file and its step modules are code, to be trusted as such. An
    error inside an included workflow names the included file.
    """
    file = os.fspath(path)
    spec = _load(file, params or {}, ((os.path.realpath(file), file),))
    try:
        return check_spec(spec)
    except WorkflowError as exc:
        raise exc.in_file(file) from None


def _load(file: str, params: Mapping[str, Any], chain: tuple[tuple[str, str], ...]) -> WorkflowSpec:
    try:
        raw = read_document(file)
        try:
            doc = msgspec.convert(raw, _File)
        except msgspec.ValidationError as exc:
            raise _from_validation_error(exc, raw) from None
        return _build(doc, file, params, chain)
    except WorkflowError as exc:
        if exc.file is None:
            exc.in_file(file)
        raise


def parse_param_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Parse CLI ``--param KEY=VALUE`` items into a dict (a later KEY wins).

    VALUE is parsed as a JSON or TOML value when it is one (``3`` is an int, ``1.5`` a float,
    ``true`` a bool, ``[1, 2]`` a list, ``"x"`` the string x); otherwise it is kept as the
    string it is. Raises :class:`~mcpp.errors.WorkflowError` when an item has no ``=`` or an
    empty KEY. (:func:`mcpp.workflow.params.parse_param_texts` keeps the text for typed parameters.)
    """
    return {key: parse_value(text) for key, text in parse_param_texts(items).items()}


def dump_plan(spec: WorkflowSpec) -> str:
    """Return a short human-readable plan of ``spec``: its settings, then each step by level.

    A step's level is 0 without dependencies, else one more than its deepest dependency's;
    steps are listed by level, then in definition order. Raises
    :class:`~mcpp.errors.WorkflowError` only for an invalid graph (never for a loaded spec).
    """
    groups = dag.Graph.from_pairs((step.id, step.depends_on) for step in spec.steps).levels()
    levels = {step_id: level for level, group in enumerate(groups) for step_id in group}
    ordered = [spec.step(step_id) for group in groups for step_id in group]
    depth = len(groups)
    settings = [
        f"max_concurrent={spec.max_concurrent or 'cpus'}",
        f"on_failure={spec.on_failure}",
        f"actors={spec.actors}" + (f" (workers={spec.workers})" if spec.workers else ""),
    ]
    if spec.scheduler is not None:
        settings.append(f"scheduler={spec.scheduler}")
    lines = [
        f"workflow {spec.name!r}" + (f" ({spec.source})" if spec.source else ""),
        f"  {len(spec.steps)} steps in {depth} levels; " + ", ".join(settings),
    ]
    if spec.params:
        lines.append("  params: " + ", ".join(f"{k}={v!r}" for k, v in spec.params.items()))
    if spec.resources:
        lines.append("  resources: " + ", ".join(f"{k}={v}" for k, v in spec.resources.items()))
    width = max(len(step.id) for step in spec.steps) if spec.steps else 0
    for step in ordered:
        extras = [f"after {', '.join(step.depends_on)}"] if step.depends_on else []
        if step.timeout is not None:
            extras.append(f"timeout {step.timeout:g}s")
        if step.retries:
            extras.append(f"retries {step.retries}")
        if step.priority:
            extras.append(f"priority {step.priority}")
        if step.uses:
            extras.append(f"uses {', '.join(step.uses)}")
        suffix = f"  ({'; '.join(extras)})" if extras else ""
        lines.append(f"  [{levels[step.id]}] {step.id:<{width}}  {step.run}{suffix}")
    return "\n".join(lines)


def _from_validation_error(exc: msgspec.ValidationError, raw: Any) -> WorkflowError:
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
        struct: type[msgspec.Struct] = _File
    elif owner == ["workflow"]:
        struct = _FileWorkflow
    elif owner[0] == "steps" and len(owner) == 2:
        struct = _FileStep
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


def _build(
    doc: _File, file: str, overrides: Mapping[str, Any], chain: tuple[tuple[str, str], ...]
) -> WorkflowSpec:
    values = resolve_params(doc.params, overrides)
    if doc.workflow.version is not None:
        Version(doc.workflow.version)
    included: list[WorkflowSpec] = []
    for i, entry in enumerate(doc.include):
        given = _substitute(entry.params, values, None, f"include[{i}]", "params")
        included.append(include_steps(entry, f"include[{i}]", file, given, chain, _load))
    for step in doc.steps:
        if not step.id.isidentifier() or keyword.iskeyword(step.id):
            raise WorkflowError(
                "a step id must be a Python identifier (it names the keyword argument that "
                f"carries the step's result), got {step.id!r}",
                step=step.id,
                field="id",
            )
    inner = [step for spec in included for step in spec.steps]
    pairs = [(step.id, step.depends_on) for step in inner]
    dag.Graph.from_pairs([*pairs, *((step.id, step.depends_on) for step in doc.steps)])
    folder = os.path.dirname(os.path.abspath(file))
    import_paths = tuple(dict.fromkeys([folder, os.getcwd()]))
    resources = {k: v for spec in included for k, v in spec.resources.items()} | doc.resources
    steps = tuple(_build_step(step, values, resources, import_paths) for step in doc.steps)
    paths = [*import_paths, *(p for spec in included for p in spec.import_paths)]
    return WorkflowSpec(
        name=doc.workflow.name,
        steps=(*inner, *steps),
        max_concurrent=doc.workflow.max_concurrent,
        on_failure=doc.workflow.on_failure,
        actors=doc.workflow.actors,
        workers=doc.workflow.workers,
        scheduler=doc.workflow.scheduler,
        resources=resources,
        params=values,
        source=file,
        import_paths=tuple(dict.fromkeys(paths)),
    )


def _build_step(
    step: _FileStep,
    params: dict[str, Any],
    resources: dict[str, int],
    import_paths: tuple[str, ...],
) -> StepSpec:
    args = _substitute(step.args, params, step.id, "args", "args")
    typed: dict[str, Any] = {}
    for name, expected in _SUBSTITUTED_TYPES.items():
        given = getattr(step, name)
        value = _substitute(given, params, step.id, name, name)
        try:
            typed[name] = msgspec.convert(value, expected)
        except msgspec.ValidationError as exc:
            message = str(exc)
            reason = message[:1].lower() + message[1:]
            if ", got " not in reason:
                reason += f", got {value!r}"
            used = _WHOLE_PLACEHOLDER.findall(given) if isinstance(given, str) else []
            if used:
                reason = f"mistyped parameter {', '.join(map(repr, used))}: {reason}"
            raise WorkflowError(reason, step=step.id, field=name) from None
    if step.cache is not False:
        parse_ttl(step.cache, step=step.id)
    for resource in step.uses:
        if resource not in resources:
            raise WorkflowError(
                f"unknown resource {resource!r} (declared: {', '.join(resources) or 'none'})",
                step=step.id,
                field="uses",
            )
    for clash in step.depends_on:
        if clash in args:
            raise WorkflowError(
                f"argument {clash!r} clashes with the result of upstream step {clash!r}",
                step=step.id,
                field="args",
            )
    try:
        fn = targets.resolve(step.run, import_paths=import_paths)
    except WorkflowError as exc:
        raise WorkflowError(exc.reason, step=step.id, field="run") from exc
    _check_signature(fn, step, args)
    return StepSpec(
        id=step.id,
        run=step.run,
        args=args,
        depends_on=tuple(step.depends_on),
        retry_delay=step.retry_delay,
        retry_backoff=step.retry_backoff,
        retry_max_delay=step.retry_max_delay,
        retry_on=tuple(step.retry_on),
        deadline=step.deadline,
        isolate=step.isolate,
        uses=tuple(step.uses),
        cache=step.cache,
        **typed,
    )


def _substitute(
    value: Any, params: dict[str, Any], step: str | None, field: str, where: str
) -> Any:
    if isinstance(value, str):
        return _substitute_text(value, params, step, field, where)
    if isinstance(value, list):
        return [
            _substitute(item, params, step, field, f"{where}[{i}]") for i, item in enumerate(value)
        ]
    if isinstance(value, dict):
        return {
            key: _substitute(item, params, step, field, f"{where}.{key}")
            for key, item in value.items()
        }
    return value


def _substitute_text(
    text: str, params: dict[str, Any], step: str | None, field: str, where: str
) -> Any:
    def lookup(name: str) -> Any:
        if not name.isidentifier():
            raise WorkflowError(
                f"invalid placeholder '${{{name}}}' in {where}: a parameter name is an "
                "identifier (write '$${' for a literal '${')",
                step=step,
                field=field,
            )
        if name not in params:
            known = ", ".join(params) or "none"
            raise WorkflowError(
                f"undefined parameter {name!r} in {where} (declared: {known})",
                step=step,
                field=field,
            )
        return params[name]

    whole = _WHOLE_PLACEHOLDER.fullmatch(text)
    if whole is not None:
        return copy.deepcopy(lookup(whole[1]))

    def replace(token: re.Match[str]) -> str:
        if token[0] == "$${":
            return "${"
        if token[1] is None:
            raise WorkflowError(
                f"unclosed placeholder in {where}: {text!r} (write '$${{' for a literal '${{')",
                step=step,
                field=field,
            )
        value = lookup(token[1])
        if isinstance(value, str):
            return value
        if value is None or isinstance(value, bool | int | float | list | dict):
            return msgspec.json.encode(value).decode()
        return str(value)

    return _TOKEN.sub(replace, text)


def _check_signature(fn: Callable[..., Any], step: _FileStep, args: dict[str, Any]) -> None:
    """Check that ``fn`` accepts the step's args and upstream results as keyword arguments."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature: nothing to check
        return
    by_keyword = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters)
    for field, names in (("depends_on", step.depends_on), ("args", list(args))):
        for name in names:
            if name not in by_keyword and not takes_any:
                what = "the result of upstream step" if field == "depends_on" else "argument"
                raise WorkflowError(
                    f"{step.run} takes no keyword argument {name!r} for {what} {name!r}",
                    step=step.id,
                    field=field,
                )
    given = {*args, *step.depends_on}
    for p in parameters:
        required = p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        if required and (p.name not in given or p.kind is p.POSITIONAL_ONLY):
            raise WorkflowError(
                f"{step.run} needs argument {p.name!r}, which neither args nor depends_on gives",
                step=step.id,
                field="args",
            )
