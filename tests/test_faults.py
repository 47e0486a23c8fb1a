"""The fault matrix: the CLI driven as a user would, then the machine checked afterwards.

Every test runs ``python -m mcpp.supervisor spawn --json --no-journal FILE`` on a workflow whose
steps misbehave in one way (tests/steps/fault_steps.py), checks the statuses and errors of the
``--json`` document, and proves with :class:`tests.world.World` (the test process as a child
subreaper) that no process of the run is left anywhere: not in the run's tree, not re-parented
after a double fork, not as a child of a killed supervisor.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.world import (  # world and mode are fixtures
    ROOT,
    CliResult,
    World,
    cli_argv,
    cli_env,
    descendants,
    gone,
    read_pids,
    run_cli,
    sig_caught,
    start_cli,
    step,
    wait_for,
    wait_for_file,
    write_workflow,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="the fault matrix needs Linux (prctl PR_SET_CHILD_SUBREAPER, /proc)",
)

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def options(mode: str, workers: int = 2, **extra: Any) -> dict[str, Any]:
    """``[workflow]`` options for ``mode`` (pool: ``workers``)."""
    opts: dict[str, Any] = {"actors": mode}
    if mode == "pool":
        opts["workers"] = workers
    opts.update(extra)
    return opts


def workflow(world: World, steps: list[dict[str, Any]], **opts: Any) -> Path:
    return write_workflow(world.workdir / "wf.toml", steps, **opts)


def why(result: CliResult) -> str:
    """What to print when an assertion on a run fails."""
    return f"exit {result.code}; statuses {result.statuses()}; stderr: {result.stderr[-3000:]}"


def expect(result: CliResult, step_id: str, status: str, error_type: str | None = None) -> str:
    """Assert ``step_id`` ended with ``status`` (and ``error_type``); return the message."""
    record = result.step(step_id)
    assert record["status"] == status, f"{step_id}: {record}\n{why(result)}"
    if error_type is None:
        return ""
    error = result.error(step_id)
    assert error["type"] == error_type, f"{step_id}: {error}\n{why(result)}"
    return str(error["message"])


def names_the_process(result: CliResult, step_id: str, mode: str, message: str) -> None:
    """A ProcessDied message names the process: in pool mode the worker, and its pid."""
    pid = result.step(step_id)["pid"]
    if mode == "pool":
        assert "worker process (worker:" in message, message
    assert re.search(r"\b\d{2,}\b", message), f"no pid in {message!r}"
    if pid is not None:
        assert str(pid) in message, f"pid {pid} not in {message!r}"


# --- the harness itself ------------------------------------------------------------------------

DAEMON = (
    "import sys; from tests.steps.fault_steps import spawn_daemon, write_atomic; "
    "write_atomic(sys.argv[1], str(spawn_daemon()))"
)


def start_daemon(world: World) -> int:
    pid_file = world.workdir / "daemon.pid"
    proc = world.spawn([sys.executable, "-c", DAEMON, str(pid_file)], cwd=ROOT)
    assert proc.wait(timeout=30) == 0
    return int(wait_for_file(pid_file, 10))


def test_harness_sees_a_daemon_outside_mcpp_and_reaps_it(world: World) -> None:
    pid = start_daemon(world)
    # A subreaper adopts the double-forked daemon; without one it would belong to init.
    assert psutil.Process(pid).ppid() == os.getpid()
    assert pid in {p.pid for p in descendants()}
    with pytest.raises(AssertionError, match=rf"\b{pid}\b.*sleep 300"):
        world.assert_clean(timeout=0.3)
    # assert_clean killed it; the reaper thread reaped the zombie (as init would).
    wait_for(lambda: not psutil.pid_exists(pid), 5, f"pid {pid} reaped")
    assert pid in world.reaped
    world.assert_clean(timeout=0)


def test_harness_reaper_leaves_the_tests_own_children_alone(world: World) -> None:
    proc = world.spawn(["sh", "-c", "exit 3"])
    wait_for(lambda: gone(proc.pid), 10, "sh exited")
    world.wait_passes(3)
    assert proc.wait(timeout=5) == 3, "the reaper stole the exit status of the test's own child"


def test_harness_without_reaping_zombies_stay(world: World) -> None:
    world.reap = False
    pid = start_daemon(world)
    psutil.Process(pid).kill()
    wait_for(lambda: gone(pid), 5, "daemon killed")
    world.wait_passes(3)
    assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    world.assert_clean(timeout=0)  # a zombie is not a living descendant
    world.reap = True
    wait_for(lambda: not psutil.pid_exists(pid), 5, f"pid {pid} reaped")


def test_harness_sees_a_leftover_temp_file(world: World) -> None:
    path = world.tmp / "mcpp-harness-selftest"
    path.write_text("x")
    try:
        with pytest.raises(AssertionError, match=path.name):
            world.assert_clean(timeout=0.1)
    finally:
        path.unlink()
    world.assert_clean(timeout=0)


# --- 1-8: one step fails in one way ---------------------------------------------------------


def test_01_a_raising_step_fails_and_skips_its_dependent(world: World, mode: str) -> None:
    wf = workflow(
        world,
        [
            step("bad", "fail", message="no good"),
            step("child", "number", "bad"),
            step("other", "number", value=7),
        ],
        **options(mode),
    )
    r = run_cli(world, wf)
    assert r.code == EXIT_FAILED, why(r)
    assert expect(r, "bad", "failed", "ValueError") == "no good"
    expect(r, "child", "skipped")
    assert r.step("child")["skipped_because"] == "bad"
    expect(r, "other", "succeeded")
    assert r.step("other")["result"] == 7
    world.assert_clean()


@pytest.mark.parametrize("fn", ["spin", "sleep"])
def test_02_03_a_step_that_ignores_cancellation_times_out(world: World, mode: str, fn: str) -> None:
    wf = workflow(
        world,
        [step("stuck", fn, timeout=1), step("after", "number", "stuck")],
        **options(mode),
    )
    r = run_cli(world, wf)
    assert r.code == EXIT_FAILED, why(r)
    expect(r, "stuck", "timed_out", "StepTimeout")
    expect(r, "after", "skipped")
    pid = r.step("stuck")["pid"]
    world.assert_clean(pids=[pid] if pid else [])


def test_04_a_step_that_sigkills_itself_fails_naming_the_signal(world: World, mode: str) -> None:
    wf = workflow(
        world,
        [step("victim", "sigkill_self"), step("bystander", "number", value=7)],
        **options(mode),
    )
    r = run_cli(world, wf)
    message = expect(r, "victim", "failed", "ProcessDied")
    assert "SIGKILL" in message, message
    names_the_process(r, "victim", mode, message)
    expect(r, "bystander", "succeeded")
    world.assert_clean()


def test_05_a_segfault_fails_the_step_naming_sigsegv(world: World, mode: str) -> None:
    wf = workflow(world, [step("crash", "segfault")], **options(mode))
    r = run_cli(world, wf)
    message = expect(r, "crash", "failed", "ProcessDied")
    assert "SIGSEGV" in message, message
    names_the_process(r, "crash", mode, message)
    world.assert_clean()


def test_06_exit_0_without_a_result_fails_the_step(world: World, mode: str) -> None:
    wf = workflow(world, [step("quitter", "exit_zero")], **options(mode))
    r = run_cli(world, wf)
    message = expect(r, "quitter", "failed", "ProcessDied")
    assert "exited with code 0" in message, message
    world.assert_clean()


def test_07_memory_error_under_rlimit_as_and_the_limit_does_not_leak(
    world: World, mode: str
) -> None:
    # In pool mode with one worker, `after` runs on the same worker after `hog` (priority).
    wf = workflow(
        world,
        [
            step("hog", "memory_error", headroom_mb=100, alloc_mb=1024, priority=10),
            step("after", "allocate", mb=300),
        ],
        **options(mode, workers=1),
    )
    r = run_cli(world, wf)
    expect(r, "hog", "failed", "MemoryError")
    expect(r, "after", "succeeded")
    assert r.step("after")["result"] == 300
    world.assert_clean()


def test_08_an_unencodable_result_fails_with_type_error(world: World, mode: str) -> None:
    wf = workflow(world, [step("weird", "unencodable")], **options(mode))
    r = run_cli(world, wf)
    message = expect(r, "weird", "failed", "TypeError")
    assert "cannot be encoded" in message, message
    world.assert_clean()


# --- 9-10: processes a step starts --------------------------------------------------------------


@pytest.mark.parametrize("policy", ["continue", "fail_fast"])
def test_09_a_timed_out_steps_subprocess_is_gone(world: World, mode: str, policy: str) -> None:
    sub_pid, other_pid = world.workdir / "sub.pid", world.workdir / "other.pid"
    if policy == "continue":
        steps = [step("sub", "popen_sleep", pid_file=str(sub_pid), timeout=1)]
    else:  # `sub` starts its sleep once `other` runs, so `other` is running when `sub` fails
        steps = [
            step("sub", "popen_sleep", pid_file=str(sub_pid), wait_for=str(other_pid), timeout=2),
            step("other", "popen_sleep", pid_file=str(other_pid)),
        ]
    wf = workflow(world, steps, **options(mode, on_failure=policy))
    r = run_cli(world, wf)
    assert r.code == EXIT_FAILED, why(r)
    expect(r, "sub", "timed_out", "StepTimeout")
    if policy == "fail_fast":
        expect(r, "other", "cancelled")
    pids = read_pids(sub_pid, other_pid)
    assert sub_pid.exists(), "the step never started its subprocess"
    world.assert_clean(pids=pids)
    assert all(gone(pid) for pid in pids)


def test_10_a_daemon_left_by_a_succeeding_step_is_ended(world: World, mode: str) -> None:
    pid_file = world.workdir / "daemon.pid"
    wf = workflow(world, [step("demon", "daemonize", pid_file=str(pid_file))], **options(mode))
    r = run_cli(world, wf)
    assert r.code == 0, why(r)
    expect(r, "demon", "succeeded")
    record = r.step("demon")
    assert record["result"] == 42
    daemon = read_pids(pid_file)
    assert daemon, "the step wrote no daemon pid"
    try:
        ended = record.get("ended_processes")
        assert isinstance(ended, int) and ended >= 1, f"ended_processes: {ended!r} in {record}"
    finally:
        world.assert_clean(pids=daemon)


# --- 11-15: the supervisor and the coordinator are signalled or killed ------------------------


def held_workflow(world: World, mode: str, **opts: Any) -> tuple[Path, Path]:
    pid_file = world.workdir / "held.pid"
    wf = workflow(
        world,
        [step("held", "started_then_sleep", pid_file=str(pid_file))],
        **options(mode, **opts),
    )
    return wf, pid_file


@pytest.mark.parametrize(
    ("run_mode", "signum"),
    [("per_step", signal.SIGINT), ("per_step", signal.SIGTERM), ("pool", signal.SIGINT)],
    ids=["per_step-SIGINT", "per_step-SIGTERM", "pool-SIGINT"],
)
def test_11_12_sigint_sigterm_mid_run_cancel_and_exit_130(
    world: World, run_mode: str, signum: int
) -> None:
    wf, pid_file = held_workflow(world, run_mode)
    cli = start_cli(world, wf)
    cli.wait_for_file(pid_file)
    cli.signal(signum)
    r = cli.finish(30)
    assert r.code == EXIT_INTERRUPTED, why(r)
    assert r.doc["status"] == "cancelled", why(r)
    expect(r, "held", "cancelled")
    world.assert_clean(pids=read_pids(pid_file))


def test_13_two_sigints_still_print_the_document(world: World) -> None:
    wf, pid_file = held_workflow(world, "per_step")
    cli = start_cli(world, wf)
    cli.wait_for_file(pid_file)
    cli.signal(signal.SIGINT)
    time.sleep(0.05)  # the spacing between the two signals is the scenario, not a wait
    cli.signal(signal.SIGINT)
    r = cli.finish(30)  # parses stdout as the one JSON document
    assert r.code == EXIT_INTERRUPTED, why(r)
    assert r.doc["status"] == "cancelled", why(r)
    world.assert_clean(pids=read_pids(pid_file))


@pytest.mark.parametrize("reap", [True, False], ids=["reaping", "not-reaping"])
@pytest.mark.timeout(90)
def test_14_sigkill_of_the_supervisor_leaves_nothing(world: World, mode: str, reap: bool) -> None:
    world.reap = reap
    held, demon = world.workdir / "held.pid", world.workdir / "demon.pid"
    wf = workflow(
        world,
        [
            step("held", "started_then_sleep", pid_file=str(held)),
            step("demon", "daemonize", pid_file=str(demon), then_sleep=60),
        ],
        **options(mode),
    )
    cli = start_cli(world, wf)
    cli.wait_for_file(held)
    cli.wait_for_file(demon)
    pids = read_pids(held, demon)
    cli.proc.kill()
    if reap:
        cli.proc.wait(timeout=10)
        world.assert_clean(10, pids=pids)
    else:  # the supervisor stays a zombie, like every orphan, while its children decide
        wait_for(lambda: gone(cli.pid), 10, "the supervisor's death")
        world.assert_clean(10, pids=pids)
        cli.proc.wait(timeout=10)


def find_coordinator(supervisor: int) -> psutil.Process:
    children = psutil.Process(supervisor).children()
    assert children, "the supervisor has no child process"
    if len(children) > 1:
        named = [c for c in children if "coordinator" in " ".join(c.cmdline())]
        assert len(named) == 1, [c.cmdline() for c in children]
        return named[0]
    return children[0]


def test_15_sigkill_of_the_coordinator_fails_the_run_naming_it(world: World, mode: str) -> None:
    wf, pid_file = held_workflow(world, mode)
    cli = start_cli(world, wf)
    cli.wait_for_file(pid_file)
    find_coordinator(cli.pid).kill()
    r = cli.finish(30, parse=False)
    assert r.code == EXIT_FAILED, f"exit {r.code}; stderr: {r.stderr}"
    assert "coordinator" in r.stderr, r.stderr
    assert "step process" not in r.stderr, f"the coordinator is not a step process: {r.stderr}"
    world.assert_clean(10, pids=read_pids(pid_file))


# --- 16-18: a step that stops its runtime -------------------------------------------------------


@pytest.mark.timeout(90)
def test_16_a_sigstopped_step_process_is_unresponsive(world: World, mode: str) -> None:
    wf = workflow(
        world,
        [step("frozen", "sigstop_self"), step("other", "number", value=7)],
        **options(mode),
    )
    r = run_cli(world, wf, timeout=30)
    assert r.code == EXIT_FAILED, why(r)
    expect(r, "frozen", "failed", "Unresponsive")
    expect(r, "other", "succeeded")
    assert r.doc["duration_s"] < 30, "detected within ~5-10 s"
    world.assert_clean(10)


@pytest.mark.timeout(120)
def test_17_a_swallowed_memory_error_still_ends_the_step(world: World, mode: str) -> None:
    # The step returns while holding every byte it could get. Whether the actor's runtime
    # still finds the memory to report is up to the allocator: either the result arrives, or
    # the step fails as its actor stops answering or dies. The run never hangs (the CLI's own
    # bound is the check) and leaves nothing behind.
    wf = workflow(
        world,
        [step("hog", "swallow_memory_error"), step("other", "number", value=7)],
        **options(mode),
    )
    r = run_cli(world, wf, timeout=60)
    record = r.step("hog")
    error_type = (record["error"] or {}).get("type")
    ended = (r.code, record["status"], error_type, record["result"])
    assert ended in {
        (0, "succeeded", None, "returned"),
        (EXIT_FAILED, "failed", "Unresponsive", None),
        (EXIT_FAILED, "failed", "ProcessDied", None),
        (EXIT_FAILED, "failed", "MemoryError", None),
    }, why(r)
    expect(r, "other", "succeeded")
    world.assert_clean(10)


@pytest.mark.timeout(90)
def test_18_an_async_step_blocking_the_workers_loop_times_out(world: World) -> None:
    wf = workflow(
        world,
        [
            step("a", "number", value=1),
            step("b", "block_loop", "a", seconds=15, timeout=1),
        ],
        **options("pool", workers=1),
    )
    r = run_cli(world, wf, timeout=60)
    expect(r, "a", "succeeded")
    expect(r, "b", "timed_out", "StepTimeout")
    assert r.doc["duration_s"] < 10, f"the run waited for the 15 s sleep: {r.doc['duration_s']}"
    world.assert_clean()


# --- 19-20: the pool under churn, and what a step may leave in a worker ------------------------


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_19_a_worker_dying_amid_quick_steps_fails_only_its_step(world: World, attempt: int) -> None:
    quick = [step(f"q{i}", "quick", index=i) for i in range(40)]
    wf = workflow(
        world,
        [
            *quick,
            step("crash", "sigkill_self", delay=0.05),
            step("join", "count", *[f"q{i}" for i in range(40)]),
        ],
        **options("pool", workers=2),
    )
    r = run_cli(world, wf)
    assert r.code == EXIT_FAILED, why(r)
    message = expect(r, "crash", "failed", "ProcessDied")
    assert "worker process (worker:" in message, message
    bad = {k: v for k, v in r.statuses().items() if v != "succeeded"}
    assert bad == {"crash": "failed"}, why(r)
    assert [r.step(f"q{i}")["result"] for i in range(40)] == list(range(40))
    assert r.step("join")["result"] == 40
    world.assert_clean()


def test_20_a_step_leaves_no_process_wide_state_to_the_next(world: World) -> None:
    # One worker, one chain: every step runs on that worker, in this order.
    wf = workflow(
        world,
        [
            step("pristine", "observe"),
            step("mutate", "mutate", "pristine"),
            step("after", "observe", "mutate"),
            step("usr1", "install_sigusr1", "after"),
            step("after_usr1", "observe", "usr1"),
        ],
        **options("pool", workers=1),
    )
    r = run_cli(world, wf)
    for step_id in ("pristine", "mutate", "after", "usr1", "after_usr1"):
        expect(r, step_id, "succeeded")
    pristine = r.step("pristine")["result"]
    assert pristine["leak"] is None and pristine["fd0"] is not None, pristine
    assert r.step("usr1")["result"].startswith("python:")
    changed = {}
    for step_id in ("after", "after_usr1"):
        seen = r.step(step_id)["result"]
        changed[step_id] = {k: (pristine[k], seen[k]) for k in pristine if seen[k] != pristine[k]}
    assert not any(changed.values()), f"state left by an earlier step (pristine, seen): {changed}"
    world.assert_clean()


# --- 21-22: the CLI as a shell uses it ---------------------------------------------------------


def test_21_command_substitution_returns_when_a_step_left_a_daemon(world: World) -> None:
    pid_file = world.workdir / "daemon.pid"
    wf = workflow(
        world, [step("demon", "daemonize", pid_file=str(pid_file))], **options("per_step")
    )
    proc = world.spawn(
        cli_argv(wf),
        cwd=world.cwd,
        env=cli_env(world),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        exited = proc.poll()
        for leftover in descendants():  # whatever holds the pipe open
            with contextlib.suppress(psutil.Error):
                leftover.kill()
        proc.kill()
        proc.communicate(timeout=10)
        pytest.fail(
            f"$(mcpp spawn --json) did not return within 30 s (the CLI had "
            f"{'exited with ' + str(exited) if exited is not None else 'not exited'}): "
            "something it left holds its stdout open"
        )
    r = CliResult(code=proc.returncode, stdout=out.decode(), stderr=err.decode()).parse()
    assert r.code == 0, why(r)
    assert r.step("demon")["result"] == 42
    world.assert_clean(pids=read_pids(pid_file))


def test_22_sigterm_during_start_up_exits_130_without_a_traceback(world: World) -> None:
    wf, pid_file = held_workflow(world, "per_step")
    cli = start_cli(world, wf)

    def catches_sigterm() -> bool:
        if cli.proc.poll() is not None:
            raise AssertionError(f"the CLI exited first: {cli.stderr_text()}")
        return sig_caught(cli.pid, signal.SIGTERM)

    wait_for(catches_sigterm, 30, "the CLI to catch SIGTERM", interval=0.001)
    cli.signal(signal.SIGTERM)
    r = cli.finish(30, parse=False)
    assert r.code == EXIT_INTERRUPTED, f"exit {r.code}; stderr: {r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    # Empty (interrupted before the run began) or the one document (during the run).
    assert r.stdout.strip() == "" or r.parse().doc is not None
    world.assert_clean(10, pids=read_pids(pid_file))


def test_23_what_steps_print_never_reaches_the_json_document(world: World, mode: str) -> None:
    wf = workflow(world, [step("loud", "loud")], **options(mode))
    r = run_cli(world, wf)  # parses stdout as exactly one JSON document
    assert r.code == 0, why(r)
    assert r.step("loud")["result"] == 7
    log = world.home / "runs" / r.doc["run_id"] / "logs" / "loud" / "1.log"
    for line in ("printed by a step", "written to fd 1", "echoed by a subprocess"):
        assert line not in r.stderr, r.stderr  # nor on the terminal: in the step's log
        assert line in log.read_text()
    world.assert_clean()


def test_24_sigkill_of_the_supervisor_during_start_up_leaves_nothing(world: World) -> None:
    wf, _ = held_workflow(world, "per_step")
    cli = start_cli(world, wf)
    # As soon as the coordinator exists, before its runtime is up: it must not outlive us.
    wait_for(lambda: psutil.Process(cli.pid).children(), 30, "the coordinator", interval=0.001)
    cli.signal(signal.SIGKILL)
    cli.proc.wait(timeout=10)
    world.assert_clean(10)


@pytest.mark.parametrize("attempt", range(3))
def test_25_ctrl_c_to_the_process_group_during_start_up_shows_no_traceback(
    world: World, attempt: int
) -> None:
    wf, pid_file = held_workflow(world, "pool")
    cli = start_cli(world, wf, start_new_session=True)  # its own group, as a terminal's job

    def fork_server() -> bool:  # the coordinator's first child: importing the runtime now
        if cli.proc.poll() is not None:
            raise AssertionError(f"the CLI exited first: {cli.stderr_text()}")
        with contextlib.suppress(psutil.Error):
            return any(c.children() for c in psutil.Process(cli.pid).children())
        return False

    wait_for(fork_server, 30, "the fork server", interval=0.001)
    os.killpg(cli.pid, signal.SIGINT)  # what Ctrl-C in the terminal does: every process
    r = cli.finish(30, parse=False)
    assert r.code == EXIT_INTERRUPTED, f"exit {r.code}; stderr: {r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    assert not pid_file.exists()  # interrupted before its step started
    world.assert_clean(10)
