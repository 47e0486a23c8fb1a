"""Workflow files: load and validate them into a :class:`~mcpp.workflow.spec.WorkflowSpec`.

A workflow file is TOML, JSON or YAML (chosen by the suffix: ``.toml``, ``.json``, ``.yaml``,
``.yml``), all with the same schema: a ``workflow`` table, optional ``params`` and ``resources``
tables and a ``steps`` array (see DESIGN.md, "Workflow files").

Everything is checked before anything runs, and each problem raises
:class:`~mcpp.errors.WorkflowError` naming the file, the step and the field: unknown keys, wrong
types, missing or out-of-range values, invalid or duplicate step ids, unknown dependencies and
cycles (via :mod:`mcpp.dag`), unresolvable ``run`` targets (the target is imported, via
:mod:`mcpp.workflow.targets`), step functions that cannot take their arguments, and undefined or
mistyped parameters. The file's schema and its error messages are :mod:`mcpp.workflow.schema`.

Parameters: ``${name}`` in a step's ``args`` (at any depth), ``timeout``, ``retries`` and
``priority`` is replaced by the parameter's value (:mod:`mcpp.workflow.placeholders`). Typed
parameters are described in :mod:`mcpp.workflow.params`; ``[workflow] version``,
``description`` and ``[[include]]`` (steps of other workflows under a prefix, composed then
validated as a whole) in :mod:`mcpp.workflow.templates`.
"""

from __future__ import annotations

import inspect
import keyword
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from mcpp.cache.model import parse_ttl
from mcpp.dag import Graph
from mcpp.dag.heuristics import levels as graph_levels
from mcpp.errors import WorkflowError
from mcpp.workflow import targets
from mcpp.workflow.bounded import read_document
from mcpp.workflow.params import parse_param_texts, parse_value, resolve_params
from mcpp.workflow.placeholders import WHOLE_PLACEHOLDER, substitute
from mcpp.workflow.schema import SUBSTITUTED_TYPES, File, FileStep, validation_error
from mcpp.workflow.spec import StepSpec, WorkflowSpec, check_spec
from mcpp.workflow.templates import Version, include_steps

__all__ = ["dump_plan", "load_workflow_spec", "parse_param_overrides"]


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
            doc = msgspec.convert(raw, File)
        except msgspec.ValidationError as exc:
            raise validation_error(exc, raw) from None
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
    groups = graph_levels(Graph.from_pairs((step.id, step.depends_on) for step in spec.steps))
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


def _build(
    doc: File, file: str, overrides: Mapping[str, Any], chain: tuple[tuple[str, str], ...]
) -> WorkflowSpec:
    values = resolve_params(doc.params, overrides)
    if doc.workflow.version is not None:
        Version(doc.workflow.version)
    included: list[WorkflowSpec] = []
    for i, entry in enumerate(doc.include):
        given = substitute(entry.params, values, None, f"include[{i}]", "params")
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
    Graph.from_pairs([*pairs, *((step.id, step.depends_on) for step in doc.steps)])
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
    step: FileStep,
    params: dict[str, Any],
    resources: dict[str, int],
    import_paths: tuple[str, ...],
) -> StepSpec:
    args = substitute(step.args, params, step.id, "args", "args")
    typed: dict[str, Any] = {}
    for name, expected in SUBSTITUTED_TYPES.items():
        given = getattr(step, name)
        value = substitute(given, params, step.id, name, name)
        try:
            typed[name] = msgspec.convert(value, expected)
        except msgspec.ValidationError as exc:
            message = str(exc)
            reason = message[:1].lower() + message[1:]
            if ", got " not in reason:
                reason += f", got {value!r}"
            used = WHOLE_PLACEHOLDER.findall(given) if isinstance(given, str) else []
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


def _check_signature(fn: Callable[..., Any], step: FileStep, args: dict[str, Any]) -> None:
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
                what = f" for the result of upstream step {name!r}" if field == "depends_on" else ""
                raise WorkflowError(
                    f"{step.run} takes no keyword argument {name!r}{what}",
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
