"""The actor runtime end to end: real coordinator and step processes, real failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
import pytest

import mcpp
from mcpp.protocol import StepStarted
from mcpp.supervisor.results import RunRecorder
from tests.conftest import wait_for_text

pytestmark = pytest.mark.usefixtures("no_leftovers")

STEPS = "tests.steps.runtime_steps"


@pytest.fixture(params=["per_step", "pool"])
def mode(request: pytest.FixtureRequest) -> str:
    """Every runtime behaviour holds with an actor per step and on a pool of workers."""
    return str(request.param)


def workflow(mode: str, name: str = "t", **options: Any) -> mcpp.Workflow:
    return mcpp.Workflow(name, actors=mode, **options)  # type: ignore[arg-type]


def target(fn: str) -> str:
    return f"{STEPS}:{fn}"


async def test_diamond_passes_results_to_dependents(mode: str) -> None:
    wf = workflow(mode)
    wf.add_step("a", target("number"), args={"value": 5})
    wf.add_step("b", target("double"), depends_on=["a"])
    wf.add_step("c", target("async_triple"), depends_on=["a"])
    wf.add_step("d", target("add"), depends_on=["b", "c"])
    result = await wf.run_async()
    assert result.status == "succeeded", result
    assert {k: v.result for k, v in result.steps.items()} == {"a": 5, "b": 10, "c": 15, "d": 25}
    assert all(step.attempts == 1 for step in result.steps.values())
    pids = {step.pid for step in result.steps.values()}
    if mode == "per_step":
        assert len(pids) == 4, "every step runs in a process of its own"
    else:
        assert len(pids) <= 2, "steps run on the pool's workers"
    assert not any(psutil.pid_exists(pid) for pid in pids if pid is not None)


async def test_wide_dag_with_a_join(mode: str) -> None:
    wf = workflow(mode, max_concurrent=4)
    for i in range(10):
        wf.add_step(f"n{i}", target("number"), args={"value": i})
    wf.add_step("join", target("add"), depends_on=[f"n{i}" for i in range(10)])
    result = await wf.run_async()
    assert result.status == "succeeded"
    assert result.steps["join"].result == sum(range(10))


async def test_a_slow_branch_does_not_hold_back_an_unrelated_one(mode: str, tmp_path: Path) -> None:
    # `slow` can only succeed once `b` (a dependent of the unrelated `a`) has run while `slow`
    # was still running: with level barriers `b` would wait for `slow`, and `slow` would fail.
    marker = tmp_path / "b-ran"
    wf = workflow(mode, max_concurrent=3)
    wf.add_step("slow", target("wait_for"), args={"path": str(marker), "limit": 30})
    wf.add_step("a", target("number"), args={"value": 1})
    wf.add_step("b", target("touch"), args={"path": str(marker)}, depends_on=["a"])
    result = await wf.run_async()
    assert result.status == "succeeded", result.steps["slow"].error
    assert result.steps["slow"].result == "released"


async def test_failure_skips_exactly_the_transitive_dependents(mode: str) -> None:
    wf = workflow(mode)
    wf.add_step("root", target("number"), args={"value": 1})
    wf.add_step("bad", target("fail"), args={"message": "no good"}, depends_on=["root"])
    wf.add_step("child", target("double"), args={"a": 1}, depends_on=["bad"])
    wf.add_step("grandchild", target("double"), depends_on=["child"])
    wf.add_step("other", target("add"), depends_on=["root"])
    wf.add_step("other2", target("add"), depends_on=["other"])
    result = await wf.run_async()
    steps = result.steps
    assert result.status == "failed"
    assert steps["bad"].status == "failed"
    assert steps["bad"].error is not None
    assert steps["bad"].error.type == "ValueError"
    assert steps["bad"].error.message == "no good"
    assert "runtime_steps.py" in steps["bad"].error.traceback
    assert steps["child"].status == steps["grandchild"].status == "skipped"
    assert steps["child"].skipped_because == "bad"
    assert steps["grandchild"].skipped_because == "bad"
    assert steps["other2"].status == "succeeded"
    assert steps["other2"].result == 1


async def test_fail_fast_cancels_running_steps_and_skips_the_rest(
    mode: str, tmp_path: Path
) -> None:
    never = tmp_path / "never"
    wf = workflow(mode, on_failure="fail_fast", max_concurrent=2)
    wf.add_step("waiting", target("wait_for"), args={"path": str(never)})
    wf.add_step("bad", target("fail"))
    wf.add_step("later", target("double"), depends_on=["waiting"])
    result = await wf.run_async()
    assert result.status == "failed"
    assert result.steps["bad"].status == "failed"
    assert result.steps["waiting"].status == "cancelled"
    assert result.steps["later"].status == "skipped"
    # It may be cancelled before its process reported a start; if it did, that process is gone
    # (and the no_leftovers fixture proves no process of the run survives either way).
    pid = result.steps["waiting"].pid
    assert pid is None or not psutil.pid_exists(pid)


@pytest.mark.parametrize("fn", ["spin", "sleep_long"])
async def test_timeout_stops_a_step_that_ignores_cancellation(mode: str, fn: str) -> None:
    wf = workflow(mode)
    wf.add_step("stuck", target(fn), timeout=1)
    wf.add_step("after", target("double"), args={"a": 1}, depends_on=["stuck"])
    started: list[int] = []

    def hook(_: RunRecorder, event: Any) -> None:
        if isinstance(event, StepStarted):
            started.append(event.pid)

    result = await wf.run_async(on_event=hook)
    stuck = result.steps["stuck"]
    assert stuck.status == "timed_out"
    assert stuck.error is not None and stuck.error.type == "StepTimeout"
    assert result.steps["after"].status == "skipped"
    assert started and not psutil.pid_exists(started[0])
    # The step would run 60 s or forever: a run far shorter than that proves it was stopped.
    assert result.duration_s < 30


async def test_a_step_process_killed_from_outside_fails_that_step(
    mode: str, tmp_path: Path
) -> None:
    import os
    import signal

    import trio

    pid_file, release = tmp_path / "pid", tmp_path / "release"
    wf = workflow(mode)
    wf.add_step(
        "victim", target("pid_then_wait"), args={"pid_file": str(pid_file), "release": str(release)}
    )
    wf.add_step("bystander", target("number"), args={"value": 7})

    async def kill_when_started() -> None:
        os.kill(int(await wait_for_text(pid_file)), signal.SIGKILL)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(kill_when_started)
        result = await wf.run_async()
    victim = result.steps["victim"]
    assert victim.status == "failed"
    assert victim.error is not None
    assert victim.error.type == "ProcessDied"
    assert "SIGKILL" in victim.error.message
    assert result.steps["bystander"].result == 7


async def test_retries_run_a_failing_step_again(mode: str) -> None:
    wf = workflow(mode)
    wf.add_step("flaky", target("fail"), retries=2, retry_delay=0.01)
    result = await wf.run_async()
    assert result.steps["flaky"].status == "failed"
    assert result.steps["flaky"].attempts == 3


async def test_an_unencodable_result_fails_the_step_naming_the_type(mode: str) -> None:
    wf = workflow(mode)
    wf.add_step("weird", target("unencodable"))
    result = await wf.run_async()
    error = result.steps["weird"].error
    assert result.steps["weird"].status == "failed"
    assert error is not None
    assert "weird" in error.message and "object" in error.message


async def test_decorated_steps_run_with_upstream_results() -> None:
    from tests.steps import api_steps

    result = await api_steps.wf.run_async()
    assert result.status == "succeeded"
    assert result.steps["transform"].result == sum(range(10)) * 2
