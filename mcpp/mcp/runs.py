"""The runs an MCP server owns: each one ``mcpp spawn`` (or ``resume``) child process.

One process per run, never a run inside the server: two runs in one process hang (tractor's
process-wide state), and a child keeps a step's crash away from the server. Each child is
``python -m mcpp.mcp.child`` in a session of its own (so an MCP client that kills the server's
process group does not reach it), with its stdout and stderr in files of the server's private
temporary folder and its journal where the server's is (same working directory, same
``MCPP_HOME``).

A :class:`RunManager` lives in ``async with RunManager.open(policy)`` (anyio; the server runs on
asyncio). Leaving the block cancels every run still going (SIGTERM: the supervisor cancels its
steps, journals the run as ``cancelled`` and exits 130; SIGKILL after ``grace`` seconds), waits
for each to exit. With ``Policy.keep_runs`` the runs are left
to finish on their own instead, and children are started without the parent-death signal (see
:mod:`mcpp.mcp.child`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import anyio
import anyio.abc

from mcpp.errors import RefusedError
from mcpp.home import PRIVATE_FILE, private_folder, run_folder
from mcpp.mcp.policy import Policy
from mcpp.workflow.spec import WorkflowSpec

__all__ = ["CANCEL_GRACE", "OwnedRun", "RunManager"]

CANCEL_GRACE: Final = 15.0  # the supervisor gives its steps 10 s (INTERRUPT_GRACE) after SIGTERM
POLL_INTERVAL: Final = 0.05  # where a pidfd is not available: how often to look at a child
STDERR_TAIL: Final = 4000


@dataclass(eq=False)
class OwnedRun:
    """A run child of this server. ``returncode`` is set (and ``done`` set) once it exited."""

    run_id: str
    kind: Literal["spawn", "resume"]
    process: subprocess.Popen[bytes]
    spec: WorkflowSpec | None
    stderr_path: Path
    started_at: float = field(default_factory=time.time)
    done: anyio.Event = field(default_factory=anyio.Event)
    returncode: int | None = None
    cancelled: bool = False

    @property
    def alive(self) -> bool:
        """True until the child exited."""
        return self.returncode is None

    def stderr_tail(self) -> str:
        """The end of what the child wrote to stderr (why it failed to start, say)."""
        try:
            return self.stderr_path.read_text(errors="replace")[-STDERR_TAIL:].strip()
        except OSError:
            return ""


class RunManager:
    """Start, watch, cancel and finally end the server's run children.

    ``cwd`` and ``env`` are the children's (default: the server's). At most
    ``policy.max_runs`` run at once.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        grace: float = CANCEL_GRACE,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.policy = policy
        self.grace = grace
        self.cwd = cwd
        self.env = env
        self.runs: dict[str, OwnedRun] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    @classmethod
    @asynccontextmanager
    async def open(cls, policy: Policy, **options: Any) -> AsyncIterator[RunManager]:
        """A manager for the block's duration (``options`` as for the constructor).

        Leaving the block (however: also cancelled) ends every run still alive unless
        ``policy.keep_runs``.
        """
        manager = cls(policy, **options)
        async with anyio.create_task_group() as tg:
            manager._tg = tg
            try:
                yield manager
            finally:
                with anyio.CancelScope(shield=True):
                    if not policy.keep_runs:
                        await manager.end_all()
                tg.cancel_scope.cancel()

    def active(self) -> list[OwnedRun]:
        """The runs whose child is still alive."""
        return [run for run in self.runs.values() if run.alive]

    def get(self, run_id: str) -> OwnedRun | None:
        """The run ``run_id`` if this server started it (its latest child)."""
        return self.runs.get(run_id)

    def check_room(self, run_id: str | None = None) -> None:
        """Raise RefusedError if ``run_id`` is running here or no run may start now."""
        if run_id is not None and (run := self.runs.get(run_id)) is not None and run.alive:
            raise RefusedError(f"run {run_id} is still running (this server started it)")
        active = self.active()
        if len(active) >= self.policy.max_runs:
            ids = ", ".join(run.run_id for run in active)
            raise RefusedError(
                f"this server already runs {len(active)} workflows, its limit (--max-runs "
                f"{self.policy.max_runs}): {ids}; wait for one to finish or cancel one"
            )

    async def start(
        self,
        run_id: str,
        command: list[str],
        *,
        kind: Literal["spawn", "resume"],
        spec: WorkflowSpec | None = None,
    ) -> OwnedRun:
        """Start ``mcpp COMMAND...`` as the child of run ``run_id``; return at once.

        Raises RefusedError beyond the limit (nothing started) and OSError if it cannot start.
        """
        assert self._tg is not None, "use RunManager.open()"
        self.check_room(run_id)
        argv = [sys.executable, "-m", "mcpp.mcp.child"]
        if not self.policy.keep_runs:
            argv += ["--server", str(os.getpid())]
        argv += ["--", *command]
        stderr_path = private_folder(run_folder(run_id)) / "supervisor.err"
        process = self._launch(argv, stderr_path)
        run = OwnedRun(
            run_id=run_id, kind=kind, process=process, spec=spec, stderr_path=stderr_path
        )
        self.runs[run_id] = run
        self._tg.start_soon(self._reap, run)
        return run

    def _launch(self, argv: list[str], stderr_path: Path) -> subprocess.Popen[bytes]:
        """Start ``argv``, its stderr appended to ``stderr_path`` (0600), stdout discarded.

        Called in the event loop's thread, never a worker thread: the child's parent-death
        signal fires when the thread that started it ends.
        """
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        err = os.open(stderr_path, flags, PRIVATE_FILE)
        try:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
            )
        finally:
            os.close(err)

    @staticmethod
    async def _reap(run: OwnedRun) -> None:
        """Task: wait for the child to exit (a pidfd where there is one), reap it."""
        try:
            pidfd = os.pidfd_open(run.process.pid)
        except (AttributeError, OSError):
            pidfd = None
        try:
            while run.process.poll() is None:
                if pidfd is None:
                    await anyio.sleep(POLL_INTERVAL)
                else:
                    await anyio.wait_readable(pidfd)
        finally:
            if pidfd is not None:
                os.close(pidfd)
        run.returncode = run.process.returncode
        run.done.set()

    async def cancel(self, run: OwnedRun) -> None:
        """SIGTERM the run's child and wait for it to exit; SIGKILL it after ``grace`` s."""
        run.cancelled = True
        await self._end([run])

    async def end_all(self) -> None:
        """Cancel every run still alive and wait for all of them (the server is leaving)."""
        await self._end(self.active())

    async def _end(self, runs: list[OwnedRun]) -> None:
        for run in runs:
            if run.alive:
                with contextlib.suppress(ProcessLookupError):
                    run.process.send_signal(signal.SIGTERM)
        with anyio.move_on_after(self.grace):
            for run in runs:
                await run.done.wait()
        for run in runs:
            if run.alive:
                with contextlib.suppress(ProcessLookupError):
                    run.process.kill()
        for run in runs:
            await run.done.wait()
