"""What the MCP tools share: their argument types, the server's state, loading a workflow, and
the rule that mcpp's errors reach the client as tool errors with the command line's messages
(``invalid workflow: FILE: step 'x', field 'timeout': ...``), never a traceback.

Blocking work (loading a workflow, which imports its step modules; reading the journal) runs in
a worker thread; loads are serialised, since they change ``sys.path`` for a moment.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import anyio
import anyio.to_thread
import msgspec
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from mcpp.errors import MCPPError, WorkflowError
from mcpp.home import PRIVATE_FILE, private_folder, run_folder
from mcpp.mcp import views
from mcpp.mcp.policy import Policy, looks_like_path
from mcpp.mcp.runs import RunManager
from mcpp.workflow.loader import load_workflow_spec
from mcpp.workflow.spec import WorkflowSpec
from mcpp.workflow.templates import TemplateRegistry

__all__ = [
    "File",
    "Inline",
    "InlineFormat",
    "Params",
    "RunId",
    "Tools",
    "cli_errors",
    "one_line",
]

T = TypeVar("T")


File = Annotated[
    str | None,
    Field(
        description="a workflow file (.toml, .json, .yaml) relative to the server's root, or a "
        "template NAME or NAME@VERSION (see templates_list); give file or inline"
    ),
]
Inline = Annotated[
    str | dict[str, Any] | None,
    Field(
        description="the workflow document itself: text in inline_format, or a JSON object "
        "(only if the server allows inline workflows)"
    ),
]
InlineFormat = Annotated[Literal["toml", "json", "yaml"], Field(description="the format of inline")]
Params = Annotated[
    dict[str, Any] | None,
    Field(description="parameter values by name (the workflow's [params]), JSON-typed"),
]
RunId = Annotated[str, Field(description="a run id, a unique prefix of one, or 'last'")]


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn mcpp's errors into tool errors with the command line's messages."""
    try:
        yield
    except WorkflowError as exc:
        raise ToolError(f"invalid workflow: {one_line(exc)}") from None
    except MCPPError as exc:
        raise ToolError(one_line(exc)) from None
    except OSError as exc:
        raise ToolError(f"{type(exc).__name__}: {exc}") from None


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


class Tools:
    """The state the tools share: the policy, the runs, the load lock."""

    def __init__(self, policy: Policy, runs: RunManager) -> None:
        self.policy = policy
        self.runs = runs
        self.load_lock = anyio.Lock()

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a worker thread."""
        return await anyio.to_thread.run_sync(fn, *args)

    def _load(
        self,
        file: str | None,
        inline: str | dict[str, Any] | None,
        fmt: str,
        params: Any,
        run_id: str | None,
    ) -> WorkflowSpec:
        """Load and validate the workflow (blocking). Raises WorkflowError, RefusedError.

        An inline workflow is written to ``workflow.FORMAT`` in run ``run_id``'s folder (so
        the run and its resume read it), or to a temporary folder removed at once.
        """
        if (file is None) == (inline is None):
            raise WorkflowError("give exactly one of file and inline")
        if inline is not None:
            self.policy.check_inline()
            if run_id is not None:
                return _load_inline(private_folder(run_folder(run_id)), inline, fmt, params)
            with tempfile.TemporaryDirectory(prefix="mcpp-inline-") as folder:
                return _load_inline(Path(folder), inline, fmt, params)
        assert file is not None
        if looks_like_path(file):
            return load_workflow_spec(self.policy.resolve(file), params or {})
        template = TemplateRegistry(self.policy.template_dir).find(file)
        return load_workflow_spec(self.policy.resolve(template.path), params or {})

    async def load(
        self,
        file: str | None,
        inline: str | dict[str, Any] | None,
        fmt: str,
        params: Any,
        run_id: str | None = None,
    ) -> WorkflowSpec:
        """:meth:`_load` in a worker thread, one at a time (see :meth:`importing`)."""
        return await self.importing(self._load, file, inline, fmt, params, run_id)

    async def importing(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)``, which imports step modules, in a worker thread, one at a time,
        with ``sys.stdout`` pointed at stderr: what a module prints when it is imported must
        never reach the MCP client's wire (the SDK's stdio transport points fd 1 at stderr
        too; this holds whatever it does)."""
        async with self.load_lock:
            return await self.blocking(_quietly, fn, *args)

    async def resolve(self, text: str) -> str:
        """The run id ``text`` names (RunIdError, JournalError)."""
        return await self.blocking(views.resolve, text, dict(self.runs.runs))


def _quietly(fn: Callable[..., T], *args: Any) -> T:
    with contextlib.redirect_stdout(sys.stderr):
        return fn(*args)


def _load_inline(
    folder: Path, document: str | dict[str, Any], fmt: str, params: Any
) -> WorkflowSpec:
    """Write ``document`` to ``FOLDER/workflow.FORMAT`` (0600; an object as JSON) and load it;
    its errors name it ``inline workflow``."""
    if isinstance(document, dict):
        fmt, text = "json", msgspec.json.encode(document).decode()
    else:
        text = document
    path = folder / f"workflow.{fmt}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with open(fd, "w", encoding="utf-8") as out:
        out.write(text)
    try:
        return load_workflow_spec(path, params or {})
    except WorkflowError as exc:
        if exc.file == str(path):
            exc.in_file("inline workflow")
        raise
