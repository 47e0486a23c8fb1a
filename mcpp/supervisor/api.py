"""The Python API: build a workflow with decorators, or load one from a file, and run it.

::

    import mcpp

    wf = mcpp.Workflow("etl", max_concurrent=4)

    @wf.step(timeout=30, retries=2)
    def extract(rows: int = 1000) -> list[int]: ...

    @wf.step(depends_on=["extract"])
    def transform(extract: list[int]) -> int: ...

    if __name__ == "__main__":          # required: steps run in other processes
        result = wf.run()
        print(result.status, result.steps["transform"].result)

Steps run in their own processes, which import the step's module (for a script, the script
file under the name ``__mp_main__``); that is why a script needs the ``__main__`` guard.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

import msgspec
import trio

from mcpp.dag import Graph
from mcpp.errors import RunError, WorkflowError
from mcpp.supervisor.results import RunResult
from mcpp.supervisor.run import EventHook, run_spec
from mcpp.workflow import targets
from mcpp.workflow.spec import ActorMode, FailurePolicy, StepSpec, WorkflowSpec, check_spec

__all__ = ["Workflow", "load_workflow"]

F = TypeVar("F", bound=Callable[..., Any])

GUARD_HINT = (
    "a workflow was started while a step process imported your script: put the code that "
    'runs the workflow under `if __name__ == "__main__":` (steps run in other processes, '
    "which import the script)"
)


class Workflow:
    """A workflow: named steps with dependencies, and how to run them.

    Options mirror the ``[workflow]`` table of a workflow file. Steps are added with the
    :meth:`step` decorator or :meth:`add_step`; :meth:`spec` validates the whole.
    """

    def __init__(
        self,
        name: str,
        *,
        max_concurrent: int | None = None,
        on_failure: FailurePolicy = "continue",
        actors: ActorMode = "per_step",
        workers: int | None = None,
        resources: Mapping[str, int] | None = None,
        scheduler: str | None = None,
    ) -> None:
        self.name = name
        self.options: dict[str, Any] = {
            "max_concurrent": max_concurrent,
            "on_failure": on_failure,
            "actors": actors,
            "workers": workers,
            "resources": dict(resources or {}),
            "scheduler": scheduler,
        }
        self.steps: dict[str, StepSpec] = {}
        self.main_path: str | None = None
        self.base: WorkflowSpec | None = None

    @classmethod
    def from_spec(cls, spec: WorkflowSpec) -> Workflow:
        """Wrap an already validated spec (as :func:`load_workflow` returns)."""
        wf = cls(spec.name)
        wf.base = spec
        wf.steps = {step.id: step for step in spec.steps}
        wf.main_path = spec.main_path
        return wf

    def step(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        id: str | None = None,
        depends_on: Iterable[str | Callable[..., Any]] = (),
        **options: Any,
    ) -> Any:
        """Decorator: add ``fn`` as a step (id defaults to the function name).

        ``depends_on`` takes step ids or the decorated functions themselves; ``options`` are
        the step fields of :class:`~mcpp.workflow.spec.StepSpec` (``timeout``, ``retries``,
        ``args``,
        ``priority``...). Returns the function unchanged. Raises WorkflowError at once for an
        unknown option, a duplicate id or a function that cannot be imported by name (a lambda,
        a nested function).
        """

        def decorate(func: F) -> F:
            deps = [d if isinstance(d, str) else d.__name__ for d in depends_on]
            self.add_step(id or func.__name__, func, depends_on=deps, **options)
            return func

        return decorate(fn) if fn is not None else decorate

    def add_step(
        self,
        id: str,
        run: str | Callable[..., Any],
        *,
        depends_on: Sequence[str] = (),
        **options: Any,
    ) -> None:
        """Add a step that runs ``run`` (a function, or a ``"module:function"`` target)."""
        if id in self.steps:
            raise WorkflowError("duplicate step id", step=id, field="id")
        if not id.isidentifier():
            raise WorkflowError(f"{id!r} is not a Python identifier", step=id, field="id")
        if callable(run):
            target = targets.describe(run)
            if target.startswith(targets.MAIN + ":"):
                main = sys.modules.get("__main__")
                self.main_path = os.path.abspath(getattr(main, "__file__", "") or "") or None
        else:
            target = run
        try:
            self.steps[id] = msgspec.convert(
                {"id": id, "run": target, "depends_on": list(depends_on), **options}, StepSpec
            )
        except msgspec.ValidationError as exc:
            reason, _, where = str(exc).partition(" - at `$.")
            field = where.rstrip("`").split("[")[0].split(".")[0] or None
            raise WorkflowError(reason[:1].lower() + reason[1:], step=id, field=field) from None

    def spec(self, **overrides: Any) -> WorkflowSpec:
        """Return the validated WorkflowSpec; ``overrides`` replace workflow options.

        Raises WorkflowError for unknown dependencies, cycles, an empty workflow, and values
        beyond :mod:`mcpp.workflow.limits` or that cannot be encoded (see
        :func:`mcpp.workflow.spec.check_spec`).
        """
        if not self.steps:
            raise WorkflowError(f"workflow {self.name!r} has no steps", field="steps")
        Graph({s.id: s.depends_on for s in self.steps.values()})
        if self.base is not None:
            spec = msgspec.structs.replace(self.base, steps=tuple(self.steps.values()))
        else:
            spec = WorkflowSpec(
                name=self.name,
                steps=tuple(self.steps.values()),
                main_path=self.main_path,
                import_paths=(os.getcwd(),),
                **self.options,
            )
        changes = {k: v for k, v in overrides.items() if v is not None}
        return check_spec(msgspec.structs.replace(spec, **changes) if changes else spec)

    async def run_async(
        self,
        *,
        on_event: EventHook | None = None,
        handle_signals: bool = False,
        journal: bool = False,
        check: bool = False,
        **overrides: Any,
    ) -> RunResult:
        """Run the workflow inside trio; return its RunResult. Prints nothing.

        ``overrides`` replace workflow options (``max_concurrent=2``, ``on_failure=
        "fail_fast"``). With ``journal`` the run is journalled in ``$MCPP_HOME`` or ``./.mcpp``
        (so ``mcpp status`` shows it and :func:`mcpp.resume` can finish it). Raises
        WorkflowError for an invalid workflow, RunError if the actor tree fails or this is
        called from a step process (the missing ``__main__`` guard), and, with ``check``,
        :class:`~mcpp.errors.RunFailed` if the run did not succeed.
        """
        if _inside_actor():
            raise RunError(GUARD_HINT)
        spec = self.spec(**overrides)
        if journal:
            from mcpp.supervisor.resume import run_journalled

            result = await run_journalled(spec, on_event=on_event, handle_signals=handle_signals)
        else:
            result = await run_spec(spec, on_event=on_event, handle_signals=handle_signals)
        if check:
            result.raise_for_status()
        return result

    def run(
        self,
        *,
        progress: bool = True,
        quiet: bool = False,
        check: bool = False,
        on_event: EventHook | None = None,
        **overrides: Any,
    ) -> RunResult:
        """Run the workflow to the end (blocking); return its RunResult.

        While it runs, a live view of its steps is shown on standard error when that is a
        terminal (never otherwise; ``progress=False`` turns it off). At the end one line goes
        to standard error: the run's status, counts and each failed step's error
        (:meth:`RunResult.summary_line`); ``quiet=True`` prints nothing at all. With ``check``
        a run that did not succeed raises :class:`~mcpp.errors.RunFailed` naming the failed
        steps (as ``result.raise_for_status()`` does). ``on_event`` is called with each event.

        Ctrl-C or SIGTERM cancel the run (the result says ``cancelled``). Raises like
        :meth:`run_async`.
        """
        if _inside_actor():
            raise RunError(GUARD_HINT)
        from mcpp.supervisor.progress import Progress

        view = Progress(quiet=quiet or not progress, lines=False)

        def hook(recorder: Any, event: Any) -> None:
            view.on_event(recorder, event)
            if on_event is not None:
                on_event(recorder, event)

        with view:
            result = trio.run(
                partial(self.run_async, handle_signals=True, on_event=hook, **overrides)
            )
        if not quiet:
            view.say(f"mcpp: {result.summary_line()}")
        if check:
            result.raise_for_status()
        return result


def _inside_actor() -> bool:
    from mcpp.actors import inside_actor

    return inside_actor()


def load_workflow(
    path: str | os.PathLike[str], params: Mapping[str, Any] | None = None
) -> Workflow:
    """Load, validate and return the workflow in a TOML, JSON or YAML file.

    Raises WorkflowError naming the file, step and field of the first problem found.
    """
    from mcpp.workflow.loader import load_workflow_spec

    return Workflow.from_spec(load_workflow_spec(path, params))
