"""Scheduling on a contended pool: priorities, inheritance, resources, retries, replacement."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import trio

import mcpp
from mcpp.protocol import StepStarted
from mcpp.supervisor.results import RunRecorder
from tests.conftest import wait_for_text

pytestmark = pytest.mark.usefixtures("no_leftovers")

STEPS = "tests.steps.runtime_steps"


def target(fn: str) -> str:
    return f"{STEPS}:{fn}"


def start_order() -> tuple[list[str], Any]:
    order: list[str] = []

    def hook(_: RunRecorder, event: Any) -> None:
        if isinstance(event, StepStarted):
            order.append(event.step)

    return order, hook


async def test_higher_priority_runs_first_on_one_slot() -> None:
    wf = mcpp.Workflow("prio", actors="pool", workers=1, max_concurrent=1)
    for name, priority in [("low", 0), ("high", 10), ("mid", 5), ("also_low", 0)]:
        wf.add_step(name, target("number"), args={"value": priority}, priority=priority)
    order, hook = start_order()
    result = await wf.run_async(on_event=hook)
    assert result.status == "succeeded"
    assert order == ["high", "mid", "low", "also_low"], "priority, then definition order"


async def test_a_step_inherits_the_priority_of_what_depends_on_it() -> None:
    wf = mcpp.Workflow("inherit", actors="pool", workers=1, max_concurrent=1)
    wf.add_step("other", target("number"), args={"value": 1}, priority=5)
    wf.add_step("ancestor", target("number"), args={"value": 2}, priority=0)
    wf.add_step("urgent", target("add"), depends_on=["ancestor"], priority=10)
    order, hook = start_order()
    await wf.run_async(on_event=hook)
    assert order.index("ancestor") < order.index("other"), order


async def test_ties_go_to_the_longer_critical_path() -> None:
    wf = mcpp.Workflow("critical", actors="pool", workers=1, max_concurrent=1)
    wf.add_step("short", target("number"), args={"value": 1})
    wf.add_step("long", target("number"), args={"value": 2})
    wf.add_step("next1", target("add"), depends_on=["long"])
    wf.add_step("next2", target("add"), depends_on=["next1"])
    order, hook = start_order()
    await wf.run_async(on_event=hook)
    assert order.index("long") < order.index("short"), order


@pytest.mark.parametrize("mode", ["per_step", "pool"])
async def test_a_resource_pool_is_never_oversubscribed(mode: str, tmp_path: Path) -> None:
    holders = tmp_path / "holders"
    holders.mkdir()
    wf = mcpp.Workflow(
        "gpu",
        actors=mode,
        workers=3,
        max_concurrent=3,
        resources={"gpu": 2},  # type: ignore[arg-type]
    )
    for i in range(6):
        wf.add_step(
            f"use{i}",
            target("hold_resource"),
            args={"folder": str(holders), "name": f"use{i}", "seconds": 0.4},
            uses=["gpu"],
        )
    result = await wf.run_async()
    assert result.status == "succeeded"
    peaks = [step.result for step in result.steps.values()]
    assert max(peaks) == 2, f"peak concurrency must equal the limit, saw {peaks}"


async def test_a_worker_killed_mid_step_is_replaced_and_the_step_retried(tmp_path: Path) -> None:
    pid_file, release = tmp_path / "pid", tmp_path / "release"
    wf = mcpp.Workflow("replace", actors="pool", workers=1, max_concurrent=1)
    wf.add_step(
        "victim",
        target("pid_then_wait"),
        args={"pid_file": str(pid_file), "release": str(release)},
        retries=1,
        retry_delay=0.05,
    )
    wf.add_step("after", target("pid"), depends_on=["victim"])

    async def kill_then_release() -> None:
        first = int(await wait_for_text(pid_file))
        pid_file.unlink()
        os.kill(first, signal.SIGKILL)
        second = int(await wait_for_text(pid_file))
        assert second != first, "the retry runs on a new worker process"
        release.write_text("go")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(kill_then_release)
        result = await wf.run_async()
    victim = result.steps["victim"]
    assert victim.status == "succeeded"
    assert victim.attempts == 2
    assert victim.history[0].error_type == "ProcessDied"
    assert result.steps["after"].status == "succeeded"


@pytest.mark.parametrize("mode", ["per_step", "pool"])
async def test_backoff_is_recorded_for_every_retried_attempt(mode: str) -> None:
    wf = mcpp.Workflow("backoff", actors=mode)  # type: ignore[arg-type]
    wf.add_step(
        "flaky",
        target("fail"),
        retries=3,
        retry_delay=0.05,
        retry_backoff=2.0,
        retry_max_delay=0.15,
    )
    result = await wf.run_async()
    history = result.steps["flaky"].history
    assert [a.attempt for a in history] == [1, 2, 3, 4]
    delays = [a.retry_in_s for a in history]
    assert delays[-1] is None, "no retry after the last attempt"
    # equal jitter: each delay lies in [base/2, base], base = min(0.15, 0.05 * 2**(n-1))
    for n, delay in enumerate(delays[:-1], start=1):
        base = min(0.15, 0.05 * 2 ** (n - 1))
        assert delay is not None and base / 2 <= delay <= base


async def test_retry_on_limits_retries_to_named_exception_types() -> None:
    wf = mcpp.Workflow("retry_on", actors="pool")
    wf.add_step("other_error", target("fail"), retries=3, retry_delay=0.01, retry_on=["KeyError"])
    wf.add_step("named", target("fail"), retries=2, retry_delay=0.01, retry_on=["ValueError"])
    result = await wf.run_async()
    assert result.steps["other_error"].attempts == 1
    assert result.steps["named"].attempts == 3


async def test_an_isolated_step_in_pool_mode_gets_its_own_process() -> None:
    wf = mcpp.Workflow("isolate", actors="pool", workers=1)
    wf.add_step("pooled", target("pid"))
    wf.add_step("alone", target("pid"), isolate=True)
    result = await wf.run_async()
    assert result.status == "succeeded"
    assert result.steps["pooled"].result != result.steps["alone"].result


def test_a_round_of_dispatch_splits_evenly_and_caps_each_batch() -> None:
    from mcpp.actors.pool import MAX_BATCH, Pool

    class Stub:
        pass

    pool = Pool(Stub(), 2)  # type: ignore[arg-type]
    assert pool.share(1) == 1
    assert pool.share(7) == 4, "an even split, rounded up"
    assert pool.share(100_000) == MAX_BATCH, "a huge fan-out goes out in capped batches"


def chain(n: int, **options: Any) -> mcpp.Workflow:
    wf = mcpp.Workflow("chain", actors="pool", workers=2, **options)
    wf.add_step("s0", target("increment"))
    for i in range(1, n):
        wf.add_step(f"s{i}", target("increment"), depends_on=[f"s{i - 1}"])
    return wf


async def test_a_chain_runs_on_one_worker_with_every_result_passed_on() -> None:
    result = await chain(40).run_async()
    assert result.status == "succeeded"
    assert [result.steps[f"s{i}"].result for i in range(40)] == list(range(1, 41))
    assert all(step.attempts == 1 for step in result.steps.values())


async def test_a_failure_inside_a_chain_skips_exactly_the_rest() -> None:
    wf = chain(10)
    wf.add_step("bad", target("fail"), depends_on=["s9"])
    for i in range(10, 20):
        wf.add_step(f"s{i}", target("increment"), depends_on=["bad" if i == 10 else f"s{i - 1}"])
    result = await wf.run_async()
    assert result.steps["s9"].result == 10
    assert result.steps["bad"].status == "failed"
    assert {result.steps[f"s{i}"].status for i in range(10, 20)} == {"skipped"}
    assert {result.steps[f"s{i}"].skipped_because for i in range(10, 20)} == {"bad"}


async def test_a_retried_step_inside_a_chain_lets_the_rest_run(tmp_path: Path) -> None:
    wf = chain(5)
    wf.add_step(
        "flaky",
        target("fail_once"),
        args={"marker": str(tmp_path / "failed")},
        depends_on=["s4"],
        retries=1,
        retry_delay=0.01,
    )
    wf.add_step("s5", target("increment"), depends_on=["flaky"])
    wf.add_step("s6", target("increment"), depends_on=["s5"])
    result = await wf.run_async()
    assert result.status == "succeeded"
    assert result.steps["flaky"].attempts == 2
    assert result.steps["s6"].result == 8


async def test_a_follower_that_times_out_is_stopped_and_the_rest_skipped() -> None:
    wf = chain(3)
    wf.add_step("stuck", target("spin_after"), depends_on=["s2"], timeout=1)
    wf.add_step("after", target("increment"), depends_on=["stuck"])
    result = await wf.run_async()
    assert result.steps["s2"].result == 3
    assert result.steps["stuck"].status == "timed_out"
    assert result.steps["after"].status == "skipped"
    assert result.duration_s < 30


async def test_a_worker_killed_inside_a_chain_is_replaced_and_the_chain_finishes(
    tmp_path: Path,
) -> None:
    pid_file, release = tmp_path / "pid", tmp_path / "release"
    wf = chain(3)
    wf.add_step(
        "victim",
        target("pid_then_wait"),
        args={"pid_file": str(pid_file), "release": str(release)},
        depends_on=["s2"],
        retries=1,
        retry_delay=0.01,
    )
    wf.add_step("s3", target("pid"), depends_on=["victim"])

    async def kill_then_release() -> None:
        first = int(await wait_for_text(pid_file))
        pid_file.unlink()
        os.kill(first, signal.SIGKILL)
        await wait_for_text(pid_file)
        release.write_text("go")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(kill_then_release)
        result = await wf.run_async()
    assert result.status == "succeeded", {k: v.status for k, v in result.steps.items()}
    assert result.steps["victim"].attempts == 2
    assert result.steps["s3"].status == "succeeded"
