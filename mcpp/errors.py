"""The one small error hierarchy of mcpp.

Every exception mcpp raises on purpose derives from :class:`MCPPError`::

    MCPPError
     ├── WorkflowError (also ValueError)   a workflow or graph is invalid; nothing started
     │    └── CycleError                   the dependencies form a cycle
     ├── ProtocolError                     bytes between processes were not a valid message
     ├── RunError                          the runtime itself could not run (not a step failure)
     │    └── ClusterError                 the Dask cluster could not be reached; nothing started
     ├── RunFailed                         a run ended without every step succeeding, and the
     │                                     caller asked for an exception (check=True)
     └── RefusedError                      a server's policy refuses the request (mcpp mcp)

A step that fails is *not* an exception of the caller unless asked: it is recorded in the run
result (``result.steps[id].status == "failed"`` with its boxed error), and
``result.raise_for_status()`` or ``wf.run(check=True)`` turn that into :class:`RunFailed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "ClusterError",
    "CycleError",
    "MCPPError",
    "ProtocolError",
    "RefusedError",
    "RunError",
    "RunFailed",
    "WorkflowError",
]


class MCPPError(Exception):
    """Base class of every error mcpp raises on purpose."""


class WorkflowError(MCPPError, ValueError):
    """A workflow definition is invalid.

    Raised while loading or building a workflow, before any process starts. The message names
    the file (when there is one), the step and the field; each is also an attribute, ``None``
    where it does not apply.
    """

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        step: str | None = None,
        field: str | None = None,
    ) -> None:
        self.reason = reason
        self.file = file
        self.step = step
        self.field = field
        super().__init__(self.describe())

    def describe(self) -> str:
        """Return the message: ``FILE: step 'ID', field 'F': REASON`` with absent parts left out."""
        where = []
        if self.step is not None:
            where.append(f"step {self.step!r}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        text = ", ".join(where)
        text = f"{text}: {self.reason}" if text else self.reason
        if self.file is not None:
            text = f"{self.file}: {text}"
        return text

    def in_file(self, file: str) -> WorkflowError:
        """Return this error with ``file`` set (used by loaders to add the path)."""
        self.file = file
        self.args = (self.describe(),)
        return self


class CycleError(WorkflowError):
    """The dependencies form a cycle; ``cycle`` is the path, first node repeated at the end."""

    def __init__(self, cycle: Sequence[str], *, file: str | None = None) -> None:
        self.cycle = tuple(cycle)
        super().__init__(
            "dependency cycle: " + " -> ".join(self.cycle),
            file=file,
            step=self.cycle[0] if self.cycle else None,
            field="depends_on",
        )


class ProtocolError(MCPPError):
    """Bytes received from another process are not a valid mcpp message.

    Raised for malformed bytes, an unknown message tag, a wrong field type, a protocol version
    mismatch or a missing/wrong run secret. It fails the run loudly; it is never dropped.
    """


class RunError(MCPPError):
    """The runtime could not run the workflow (an actor could not start, a process vanished).

    Step failures are not RunErrors: they are recorded in the run result.
    """


class ClusterError(RunError):
    """The Dask cluster of a dask-mode run cannot be used: its scheduler is unreachable, the
    connection is refused (TLS), it has no worker, or the local cluster did not start.

    Raised before any step starts; the message names the scheduler's address. The CLI exits 2.
    """


class RunFailed(MCPPError):
    """A run did not succeed (a step failed, timed out or was skipped, or the run was
    cancelled), raised by ``RunResult.raise_for_status()`` and ``Workflow.run(check=True)``.

    The message names the run, its status and every failed step with its error (``step
    'transform' failed: ValueError: bad row``). ``result`` is the whole
    :class:`~mcpp.supervisor.results.RunResult`; ``failed`` the ids of the steps that failed,
    timed out or were cancelled, in definition order. Not raised for a run that succeeded.
    """

    def __init__(self, message: str, *, result: Any, failed: Sequence[str]) -> None:
        super().__init__(message)
        self.result = result
        self.failed = tuple(failed)


class RefusedError(MCPPError):
    """A request the MCP server's policy refuses: a workflow file outside its ``--root``, an
    inline workflow without ``--allow-inline``, a run beyond its ``--max-runs``, a run it does not
    own. Nothing was started or changed."""
