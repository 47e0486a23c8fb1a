"""What a resume may reuse: the steps that succeeded and did not change since.

:func:`plan_resume` compares the run's journalled spec and function hashes with the workflow as
it is now. The rules:

- a step that did not succeed runs, whatever changed in it (that is how a failure is fixed);
- a step that succeeded is reused, its stored result feeding its dependents, only if its
  definition (:data:`DEFINITION_FIELDS`: ``run``, ``args``, ``depends_on``, ``inputs``) is
  unchanged, its function's code hashes the same (:func:`mcpp.cache.keys.function_hash`, as
  the result cache does) and every upstream step is reused too; otherwise it runs again and
  the plan says why (never silently reused);
- a step added to the workflow runs; a step removed from it is dropped with its result (its
  dependents' ``depends_on`` changed, so they run again);
- execution options (``timeout``, ``retries``, ``priority``...) are free to change: they
  do not make a succeeded step run again.
"""

from __future__ import annotations

import graphlib
from dataclasses import dataclass, field

from mcpp.cache.keys import function_hash
from mcpp.errors import WorkflowError
from mcpp.workflow.spec import StepSpec, WorkflowSpec
from mcpp.workflow.targets import resolve

__all__ = ["DEFINITION_FIELDS", "ResumePlan", "function_hashes", "plan_resume"]

DEFINITION_FIELDS = ("run", "args", "depends_on", "inputs")


def function_hashes(spec: WorkflowSpec) -> dict[str, str]:
    """Step id -> :func:`~mcpp.cache.keys.function_hash` of its target, for every step whose
    target resolves here (imports the step modules; a step that does not resolve is left out:
    its run fails on its own, and a resume will not reuse it)."""
    found = {}
    for step in spec.steps:
        try:
            fn = resolve(step.run, import_paths=spec.import_paths, main_path=spec.main_path)
        except WorkflowError:
            continue
        found[step.id] = function_hash(fn)
    return found


@dataclass
class ResumePlan:
    """Which steps a resume reuses and which succeeded steps run again, and why."""

    reused: list[str] = field(default_factory=list)
    rerun: dict[str, str] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def notices(self) -> list[str]:
        """One line per succeeded step that runs again, added step and dropped step."""
        lines = [f"step '{step}' runs again: {why}" for step, why in self.rerun.items()]
        lines += [f"step '{step}' is new: it runs" for step in self.added]
        lines += [
            f"step '{step}' was removed from the workflow: its result is dropped"
            for step in self.dropped
        ]
        return lines


def _changed_field(old: StepSpec, new: StepSpec) -> str | None:
    for name in DEFINITION_FIELDS:
        before, after = getattr(old, name), getattr(new, name)
        if name == "depends_on":
            before, after = sorted(before), sorted(after)
        if before != after:
            return name
    return None


def plan_resume(
    journalled: WorkflowSpec,
    current: WorkflowSpec,
    succeeded: set[str] | frozenset[str],
    functions_then: dict[str, str],
    functions_now: dict[str, str],
) -> ResumePlan:
    """Plan a resume of a run whose steps ``succeeded`` (see the module docstring).

    ``journalled`` is the run's spec and ``functions_then`` its latest session's function
    hashes (they are those the succeeded steps ran with: a step carried over is checked at
    each resume); ``current`` and ``functions_now`` are the workflow as it is now.
    """
    old = {step.id: step for step in journalled.steps}
    plan = ResumePlan(
        added=[s.id for s in current.steps if s.id not in old],
        dropped=sorted(s for s in succeeded if s not in {t.id for t in current.steps}),
    )
    steps = {step.id: step for step in current.steps}
    reused: set[str] = set()
    order = graphlib.TopologicalSorter({s.id: s.depends_on for s in current.steps})
    for step_id in order.static_order():
        if step_id not in succeeded or step_id not in old:
            continue
        step = steps[step_id]
        changed = _changed_field(old[step_id], step)
        then, now = functions_then.get(step_id), functions_now.get(step_id)
        upstream = [u for u in step.depends_on if u not in reused]
        if changed is not None:
            plan.rerun[step_id] = f"its definition changed ({changed})"
        elif then is None:
            plan.rerun[step_id] = "the journal has no record of its function's code"
        elif now is None:
            plan.rerun[step_id] = f"its function {step.run!r} cannot be found now"
        elif then != now:
            plan.rerun[step_id] = f"its function's code changed ({step.run})"
        elif upstream:
            plan.rerun[step_id] = f"upstream step '{upstream[0]}' runs again"
        else:
            plan.reused.append(step_id)
            reused.add(step_id)
    position = {step.id: index for index, step in enumerate(current.steps)}  # definition order
    plan.reused.sort(key=position.__getitem__)
    plan.rerun = dict(sorted(plan.rerun.items(), key=lambda item: position[item[0]]))
    return plan
