"""mcpp: an actor-model workflow runtime.

A workflow is a DAG of steps; every step runs in its own actor process under a
supervising trio nursery, started by a coordinator actor as soon as its own dependencies are
done. See README.md for the workflow file format, the CLI and the failure semantics.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mcpp.errors import CycleError, MCPPError, ProtocolError, RunError, RunFailed, WorkflowError

if TYPE_CHECKING:
    from mcpp.supervisor.api import Workflow, load_workflow
    from mcpp.supervisor.results import RunResult, StepResult
    from mcpp.supervisor.resume import resume, resume_async
    from mcpp.workflow.spec import StepSpec, WorkflowSpec

# Loaded on first use, so that ``import mcpp`` (and the CLI's first lines) stay cheap.
_LAZY = {
    "RunResult": "mcpp.supervisor.results",
    "StepResult": "mcpp.supervisor.results",
    "StepSpec": "mcpp.workflow.spec",
    "WorkflowSpec": "mcpp.workflow.spec",
    "Workflow": "mcpp.supervisor.api",
    "load_workflow": "mcpp.supervisor.api",
    "resume": "mcpp.supervisor.resume",
    "resume_async": "mcpp.supervisor.resume",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mcpp' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CycleError",
    "MCPPError",
    "ProtocolError",
    "RunError",
    "RunFailed",
    "RunResult",
    "StepResult",
    "StepSpec",
    "Workflow",
    "WorkflowError",
    "WorkflowSpec",
    "load_workflow",
    "resume",
    "resume_async",
]

__version__ = "0.1.0"
