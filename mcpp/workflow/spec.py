"""Typed workflow specifications: what a workflow file or the Python API describes.

A :class:`WorkflowSpec` is plain data (msgspec Structs), fully validated and with every
``${param}`` already substituted. It is what the supervisor sends to the coordinator, so every
field must stay msgspec-encodable. Loading and validation live in :mod:`mcpp.workflow.loader`.

Numeric fields carry the bounds of :mod:`mcpp.workflow.limits` (64-bit integers, finite durations
of at
most a week), checked wherever a spec is converted or decoded; :func:`check_spec` checks a spec
built by hand (the Python API) the same way.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import msgspec.msgpack

from mcpp.errors import WorkflowError
from mcpp.workflow.limits import Backoff, Count, Int64, Retries, Seconds, Timeout, Workers

__all__ = [
    "ActorMode",
    "FailurePolicy",
    "StepSpec",
    "WorkflowSpec",
    "check_scheduler",
    "check_spec",
]

FailurePolicy = Literal["continue", "fail_fast"]
ActorMode = Literal["per_step", "pool", "dask"]
SCHEDULER_SCHEMES = ("tcp", "tls")


class StepSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One step of a workflow.

    ``run`` is ``"module:function"``; ``args`` are keyword arguments (parameters substituted);
    each upstream result arrives as a keyword argument named by the upstream step's id, or by
    ``inputs[upstream_id]`` where that is given (an included template's steps are renamed with
    a prefix, their functions still take the original names).
    """

    id: str
    run: str
    args: dict[str, Any] = {}
    depends_on: tuple[str, ...] = ()
    inputs: dict[str, str] = {}
    timeout: Timeout | None = None
    retries: Retries = 0
    retry_delay: Seconds = 1.0
    retry_backoff: Backoff = 2.0
    retry_max_delay: Seconds = 60.0
    retry_on: tuple[str, ...] = ()
    priority: Int64 = 0
    deadline: Timeout | None = None
    isolate: bool = False
    uses: tuple[str, ...] = ()
    cache: bool | str = False


class WorkflowSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A whole validated workflow.

    ``max_concurrent`` and ``workers`` of ``None`` mean the number of CPUs. ``import_paths`` are
    prepended to ``sys.path`` in every process before ``run`` targets are resolved (a workflow
    file's folder goes here). ``main_path`` is the file of a user script whose ``__main__``
    functions are steps (``run = "__main__:fn"``); ``None`` when there is none.
    """

    name: str
    steps: tuple[StepSpec, ...]
    max_concurrent: Count | None = None
    on_failure: FailurePolicy = "continue"
    actors: ActorMode = "per_step"
    workers: Workers | None = None
    resources: dict[str, Count] = {}
    params: dict[str, Any] = {}
    source: str | None = None
    import_paths: tuple[str, ...] = ()
    main_path: str | None = None
    scheduler: str | None = None

    def step(self, step_id: str) -> StepSpec:
        """Return the step with ``step_id``; raise ``KeyError`` if there is none."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


def check_spec(spec: WorkflowSpec) -> WorkflowSpec:
    """Return ``spec`` if it survives the trip every spec makes to the coordinator, else raise.

    Checks every bound, then encodes ``spec`` as MessagePack and decodes it back. Raises
    :class:`~mcpp.errors.WorkflowError` naming the step and field for a value out of range
    (an integer beyond 64 bits, a duration that is not finite or above a week), a value that
    cannot be encoded (an object msgspec does not know, a lone surrogate, nesting beyond the
    encoder's recursion limit) or an invalid ``cache`` TTL.
    """
    from mcpp.cache.model import parse_ttl  # here: defining specs needs no cache (sqlite3)

    if spec.scheduler is not None:
        if spec.actors != "dask":
            raise WorkflowError(
                f"a scheduler is used only with actors = 'dask' (actors is {spec.actors!r})",
                field="scheduler",
            )
        check_scheduler(spec.scheduler)
    for step in spec.steps:
        if step.cache is not False:
            parse_ttl(step.cache, step=step.id)
    try:
        msgspec.convert(msgspec.to_builtins(spec), WorkflowSpec)  # every bound, by field
        msgspec.msgpack.decode(msgspec.msgpack.encode(spec), type=WorkflowSpec)
    except msgspec.ValidationError as exc:
        raise _locate(spec, str(exc)) from None
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        for step in spec.steps:  # find the step whose args cannot be encoded
            try:
                msgspec.msgpack.encode(step)
            except (TypeError, ValueError, OverflowError, RecursionError) as inner:
                raise WorkflowError(
                    f"cannot be encoded: {type(inner).__name__}: {inner}",
                    step=step.id,
                    field="args",
                ) from None
        raise WorkflowError(f"cannot be encoded: {type(exc).__name__}: {exc}") from None
    return spec


def check_scheduler(address: str, *, field: str = "scheduler") -> tuple[str, str, int]:
    """Split a Dask scheduler address ``tcp://HOST:PORT`` or ``tls://HOST:PORT`` (an IPv6
    host in brackets) into scheme, host and port.

    Raises :class:`~mcpp.errors.WorkflowError` naming ``field`` for any other form: another
    scheme, no host, a port that is not a number in 1..65535.
    """
    scheme, sep, rest = address.partition("://")
    host, colon, port = rest.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    problem = None
    if not sep or scheme not in SCHEDULER_SCHEMES:
        problem = "expected tcp://HOST:PORT or tls://HOST:PORT"
    elif not colon or not host or "/" in rest:
        problem = "expected tcp://HOST:PORT or tls://HOST:PORT (host and port)"
    elif not port.isdigit() or not 1 <= int(port) <= 65535:
        problem = f"the port must be a number in 1..65535, got {port!r}"
    if problem is not None:
        raise WorkflowError(f"invalid Dask scheduler address {address!r}: {problem}", field=field)
    return scheme, host, int(port)


def _locate(spec: WorkflowSpec, message: str) -> WorkflowError:
    """``Expected `int` <= 9 - at `$.steps[2].retries``` as step and field terms."""
    reason, _, where = message.partition(" - at `$.")
    where = where.rstrip("`")
    step: str | None = None
    if where.startswith("steps["):
        index, _, where = where[len("steps[") :].partition("].")
        if index.isdigit() and int(index) < len(spec.steps):
            step = spec.steps[int(index)].id
    field = where.split("[")[0].split(".")[0] or None
    return WorkflowError(reason[:1].lower() + reason[1:], step=step, field=field)
