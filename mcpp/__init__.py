"""mcpp: an actor-model workflow runtime.

A workflow is a DAG of steps; every step runs in its own actor process (tractor) under a
supervising trio nursery, started by a coordinator actor as soon as its own dependencies are
done. See README.md for the workflow file format, the CLI and the failure semantics.
"""

from mcpp.errors import CycleError, MCPPError, ProtocolError, RunError, WorkflowError
from mcpp.results import RunResult, StepResult
from mcpp.spec import StepSpec, WorkflowSpec
from mcpp.supervisor.api import Workflow, load_workflow
from mcpp.supervisor.durable import resume, resume_async

__all__ = [
    "CycleError",
    "MCPPError",
    "ProtocolError",
    "RunError",
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
