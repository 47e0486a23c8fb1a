"""Typed workflow specifications: what a workflow file or the Python API describes.

A :class:`WorkflowSpec` is plain data (msgspec Structs), fully validated and with every
``${param}`` already substituted. It is what the supervisor sends to the coordinator, so every
field must stay msgspec-encodable. Loading and validation live in :mod:`mcpp.loader`.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = ["ActorMode", "FailurePolicy", "StepSpec", "WorkflowSpec"]

FailurePolicy = Literal["continue", "fail_fast"]
ActorMode = Literal["per_step", "pool"]


class StepSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One step of a workflow.

    ``run`` is ``"module:function"``; ``args`` are keyword arguments (parameters substituted);
    each upstream result arrives as a keyword argument named by the upstream step's id.
    """

    id: str
    run: str
    args: dict[str, Any] = {}
    depends_on: tuple[str, ...] = ()
    timeout: float | None = None
    retries: int = 0
    retry_delay: float = 1.0
    retry_backoff: float = 2.0
    retry_max_delay: float = 60.0
    retry_on: tuple[str, ...] = ()
    priority: int = 0
    deadline: float | None = None
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
    max_concurrent: int | None = None
    on_failure: FailurePolicy = "continue"
    actors: ActorMode = "per_step"
    workers: int | None = None
    resources: dict[str, int] = {}
    params: dict[str, Any] = {}
    source: str | None = None
    import_paths: tuple[str, ...] = ()
    main_path: str | None = None

    def step(self, step_id: str) -> StepSpec:
        """Return the step with ``step_id``; raise ``KeyError`` if there is none."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)
