"""Signals to ``mcpp spawn`` while its actors start: what the user's terminal gets afterwards.

A supervisor killed (SIGKILL) while the coordinator connects back to it must not leave the
coordinator printing a traceback onto the terminal after the shell returned; a Ctrl-C while a
pool worker starts must end that worker at once, without tractor's log lines. The CLI is driven
as a user would (tests/world.py) and the world checked afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from mcpp.actors.root import free_port
from tests.world import ROOT, Cli, World, start_cli, wait_for, write_workflow

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="needs Linux (prctl PR_SET_CHILD_SUBREAPER, /proc)",
)

EXIT_INTERRUPTED = 130
ATTEMPTS = 5


def pool_workflow(world: World) -> Path:
    """Two 30 s sleeps on a pool of two workers (the new user's workflow)."""
    sleeping = {"run": "mcpp.benchmarks.workloads:sleep", "args": {"seconds": 30}}
    return write_workflow(
        world.workdir / "wf.toml",
        [{"id": "a", **sleeping}, {"id": "b", **sleeping}],
        actors="pool",
        workers=2,
    )


def child_running(pid: int, module: str) -> psutil.Process | None:
    """The child of ``pid`` whose command line runs ``module`` (once it has exec'd), if any."""
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children():
            with contextlib.suppress(psutil.Error):
                if module in child.cmdline():
                    return child
    return None


def fd_target(pid: int, fd: int) -> str | None:
    """What ``fd`` of ``pid`` is (``socket:[INODE]``...), or None once it is closed."""
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None


def the_coordinator(cli: Cli) -> psutil.Process:
    """The CLI's coordinator process, once it runs its own program."""
    found: psutil.Process = wait_for(
        lambda: child_running(cli.pid, "mcpp.actors.boot"), 30, "the coordinator", 0.001
    )
    return found


def kill_as_the_coordinator_connects_back(cli: Cli) -> None:
    """SIGKILL the supervisor just before its coordinator's runtime connects back to it."""
    coordinator = the_coordinator(cli)
    argv = coordinator.cmdline()
    auth_fd = int(argv[argv.index("--auth-fd") + 1])
    key_socket = fd_target(coordinator.pid, auth_fd)
    assert key_socket is not None and key_socket.startswith("socket:"), key_socket
    # The coordinator closes the socket it reads the run's key from once its parent watch has
    # started, just before its runtime connects back to the supervisor: kill the supervisor
    # then, so that the connection is refused.
    wait_for(
        lambda: fd_target(coordinator.pid, auth_fd) != key_socket,
        30,
        "the coordinator to read its key",
        0.0005,
    )
    cli.proc.kill()
    cli.proc.wait(timeout=10)


def test_sigkill_of_the_supervisor_as_the_coordinator_connects_back_prints_nothing(
    world: World,
) -> None:
    wf = pool_workflow(world)
    for _ in range(3):  # a few times: each is one start-up racing one kill
        cli = start_cli(world, wf)
        kill_as_the_coordinator_connects_back(cli)
        world.assert_clean(10)  # the coordinator and its fork server are gone: stderr is final
        stderr = cli.stderr_text()
        assert "Traceback" not in stderr, stderr
        assert "Error" not in stderr, stderr


def worker_connected(worker: int) -> bool:
    """Whether the worker process has a TCP connection (to its parent, the coordinator)."""
    return bool(psutil.Process(worker).net_connections(kind="tcp"))


def catch_a_starting_worker(coordinator: int) -> int:
    """Stop (SIGSTOP) the first worker the coordinator's fork server forks, as soon as it runs
    on its own; return its pid."""
    server: psutil.Process = wait_for(
        lambda: child_running(coordinator, "mcpp.actors.spawner"), 30, "the fork server", 0.001
    )
    argv = server.cmdline()
    server_fd = int(argv[argv.index("--fd") + 1])
    server_socket, server_stdout = fd_target(server.pid, server_fd), fd_target(server.pid, 1)
    children = f"/proc/{server.pid}/task/{server.pid}/children"

    def started_worker() -> int | None:
        """A child of the server that closed the server's socket (the first thing a forked
        worker does, before it connects back) but kept its stdout: not a program the server
        runs with its output piped (``ldconfig``, as ctypes does while the server imports)."""
        try:
            with open(children) as file:
                pids = [int(pid) for pid in file.read().split()]
        except OSError:
            raise AssertionError("the fork server exited before it forked a worker") from None
        for pid in pids:
            if fd_target(pid, server_fd) != server_socket and fd_target(pid, 1) == server_stdout:
                return pid
        return None

    worker: int = wait_for(started_worker, 30, "a worker process", 0.0)
    os.kill(worker, signal.SIGSTOP)
    with contextlib.suppress(psutil.Error):
        assert psutil.Process(worker).cmdline() == argv, "not a forked worker"
    return worker


def test_sigint_as_a_pool_worker_starts_ends_it_at_once_and_quietly(world: World) -> None:
    wf = pool_workflow(world)
    for _ in range(ATTEMPTS):
        cli = start_cli(world, wf)
        worker = catch_a_starting_worker(the_coordinator(cli).pid)
        if worker_connected(worker):  # it got further than the scenario: try again
            os.kill(worker, signal.SIGCONT)
            cli.signal(signal.SIGINT)
            cli.finish(30, parse=False)
            world.assert_clean(10)
            continue
        # The worker exists and has not reported ready (it has not even connected back).
        cli.signal(signal.SIGINT)
        r = cli.finish(30, parse=False)
        assert r.code == EXIT_INTERRUPTED, f"exit {r.code}; stderr: {r.stderr}"
        assert "ZOMBIE" not in r.stderr, r.stderr
        assert "[CRITICAL]" not in r.stderr, r.stderr
        assert "Traceback" not in r.stderr, r.stderr
        world.assert_clean(10, pids=[worker])
        return
    pytest.fail(f"no worker was caught before it connected back, in {ATTEMPTS} runs")


def test_an_actor_that_cannot_reach_its_living_parent_still_shows_the_error(
    no_leftovers: None,
) -> None:
    # The quiet exit is for an actor whose parent is gone; with the parent alive (this test
    # process), a refused connection back to it is a real error and must be seen.
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        ours.sendall(b"k" * 32)
        ours.shutdown(socket.SHUT_WR)
        argv = [
            sys.executable,
            "-m",
            "mcpp.actors.tractor._child",
            "--uid",
            "('lonely', 'uid')",
            "--parent_addr",
            f"('127.0.0.1', {free_port()})",  # nothing listens there
            "--auth-fd",
            str(theirs.fileno()),
            "--parent-pid",
            str(os.getpid()),
        ]
        child = subprocess.run(
            argv, cwd=ROOT, pass_fds=(theirs.fileno(),), capture_output=True, text=True, timeout=60
        )
    assert child.returncode != 0, child
    assert "all attempts to connect" in child.stderr, child.stderr
