"""The coordinator's policy, driven with a fake launcher and fake pool workers: no process.

Every test runs under trio's MockClock (``autojump_clock``): a step "runs" by sleeping on the
virtual clock, so a script of seconds takes microseconds and start times are exact.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from trio.testing import MockClock

from mcpp import protocol
from mcpp.actors.coordinator import Coordinator
from mcpp.actors.launch import Emit, ProcessHandle, Report
from mcpp.actors.pool import Outcome, Pool, PoolHost, Requeue, Worker
from mcpp.actors.runner import Ledger
from mcpp.cache.step import StepCache
from mcpp.protocol import (
    ErrorInfo,
    EventBatch,
    RunFinished,
    RunWorkflow,
    StartStep,
    StepCancelled,
    StepFailed,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)
from mcpp.workflow.spec import StepSpec, WorkflowSpec
from tests.world import descendants


@pytest.fixture(autouse=True)
def no_process_started() -> Iterator[None]:
    """These tests start no process: the fakes stand in for every actor."""
    before = {p.pid for p in descendants()}
    yield
    assert {p.pid for p in descendants()} <= before


# --- the fakes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Act:
    """What one attempt of a fake step does: run ``seconds``, then succeed or fail."""

    seconds: float = 1.0
    error: str | None = None  # fail with this error type
    dies: bool = False  # pool mode: its worker process dies while it runs


OK = Act()


def fails(error: str = "ValueError", seconds: float = 1.0) -> Act:
    return Act(seconds=seconds, error=error)


@dataclass
class Script:
    """Per step, the acts of its attempts in order (the last repeats); records what ran."""

    acts: dict[str, Sequence[Act]] = field(default_factory=dict)
    started: list[tuple[str, int, float]] = field(default_factory=list)  # step, attempt, time
    running: set[str] = field(default_factory=set)
    peak: int = 0

    def begin(self, start: StartStep) -> Act:
        self.started.append((start.step, start.attempt, trio.current_time()))
        self.running.add(start.step)
        self.peak = max(self.peak, len(self.running))
        acts = self.acts.get(start.step, [OK])
        return acts[min(start.attempt, len(acts)) - 1]

    def outcome(self, start: StartStep, act: Act) -> StepSucceeded | StepFailed:
        self.running.discard(start.step)
        if act.error is None:
            result = protocol.encode_value(start.step, step=start.step)
            return StepSucceeded(
                step=start.step, attempt=start.attempt, result=result, duration_s=act.seconds
            )
        return StepFailed(
            step=start.step,
            attempt=start.attempt,
            error=ErrorInfo(type=act.error, message="scripted"),
            duration_s=act.seconds,
            timed_out=act.error == "StepTimeout",
        )

    def order(self) -> list[str]:
        return [step for step, _attempt, _at in self.started]

    def attempts(self, step_id: str) -> list[int]:
        return [attempt for step, attempt, _at in self.started if step == step_id]

    def start_time(self, step_id: str, attempt: int = 1) -> float:
        return next(at for s, a, at in self.started if (s, a) == (step_id, attempt))

    async def launch(self, step: StepSpec, start: StartStep, emit: Emit, report: Report) -> None:
        """A fake :func:`mcpp.actors.launch.run_isolated`: no process, outcomes as scripted."""
        act = self.begin(start)
        try:
            await emit(StepStarted(step=step.id, attempt=start.attempt, pid=1, at=0.0))
            if act.error == "StepTimeout":
                assert step.timeout is not None
                await trio.sleep(step.timeout)
            else:
                await trio.sleep(act.seconds)
            report(self.outcome(start, act))
        finally:
            self.running.discard(step.id)


class FakeProcess:
    """What :class:`ProcessHandle` needs of a process: a pid that ends when killed."""

    def __init__(self, pid: int, returncode: int | None = None) -> None:
        self.pid = pid
        self.returncode = returncode
        self.ended = trio.Event()

    def poll(self) -> int | None:
        return self.returncode

    def kill(self) -> None:
        self.returncode = -9
        self.ended.set()

    async def wait(self) -> int:
        await self.ended.wait()
        assert self.returncode is not None
        return self.returncode


class FakeWorkers(Pool):
    """The real :class:`Pool` with its worker processes faked: a worker is a task running its
    batches in order as scripted, keeping a real ledger; a death goes through give_back."""

    pids = itertools.count(100_000)

    def __init__(self, host: PoolHost, size: int, script: Script) -> None:
        super().__init__(host, size)
        self.script = script
        self.batches: list[tuple[str, ...]] = []

    async def serve(self, worker: Worker) -> None:
        process = FakeProcess(next(self.pids))
        worker.process = ProcessHandle(process)
        async with trio.open_nursery() as tasks:

            async def watch() -> None:
                await process.wait()
                worker.ready = False
                self.give_back(worker)
                tasks.cancel_scope.cancel()

            tasks.start_soon(watch)
            worker.ready = True
            if all(w.ready for w in self.workers):
                self.all_ready.set()
            self.host.deliver(None)
            await self.work(worker, process)

    async def work(self, worker: Worker, process: FakeProcess) -> None:
        ledger = Ledger(self.host.run_dir, process.pid)
        succeeded: set[str] = set()
        try:
            async for starts in worker.outbox:
                self.batches.append(tuple(start.step for start in starts))
                for start in starts:
                    if start.after is not None and start.after not in succeeded:
                        continue  # as a real worker: a follower runs only after its upstream
                    ledger.write(Ledger.RUNNING, start.step)
                    act = self.script.begin(start)
                    event = StepStarted(step=start.step, attempt=start.attempt, pid=1, at=0.0)
                    self.host.emit(event)
                    await trio.sleep(act.seconds)
                    if act.dies:
                        process.kill()
                        await trio.sleep_forever()
                    outcome = self.script.outcome(start, act)
                    ledger.write(Ledger.DONE)
                    if isinstance(outcome, StepSucceeded):
                        succeeded.add(start.step)
                    worker.finished(start.step)
                    self.host.deliver(outcome)
        finally:
            if ledger.fd is not None:
                os.close(ledger.fd)


@dataclass
class Run:
    """What the supervisor saw of one run."""

    status: str
    events: list[Any]
    pool: FakeWorkers | None

    def last(self, step_id: str) -> Any:
        """The last event about ``step_id``."""
        return [e for e in self.events if getattr(e, "step", None) == step_id][-1]

    def statuses(self) -> dict[str, str]:
        names = {
            StepSucceeded: "succeeded",
            StepFailed: "failed",
            StepSkipped: "skipped",
            StepCancelled: "cancelled",
        }
        return {
            e.step: names[type(e)]
            for e in self.events
            if type(e) in names and not getattr(e, "will_retry", False)
        }

    def of(self, kind: type, step_id: str) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and e.step == step_id]


def step(step_id: str, *depends_on: str, **options: Any) -> StepSpec:
    return StepSpec(id=step_id, run="tests.steps:noop", depends_on=depends_on, **options)


async def run(
    steps: Sequence[StepSpec],
    script: Script | None = None,
    *,
    run_dir: Path | None = None,
    cache_path: Path | None = None,
    identities: dict[str, str] | None = None,
    during: Any = None,
    **options: Any,
) -> Run:
    """Run ``steps`` to the end with the fakes; ``during(coordinator)`` runs beside it."""
    assert isinstance(trio.lowlevel.current_clock(), MockClock), "take the autojump_clock fixture"
    script = script or Script()
    options.setdefault("max_concurrent", 8)
    spec = WorkflowSpec(name="wf", steps=tuple(steps), **options)
    message = RunWorkflow(
        version=protocol.PROTOCOL_VERSION,
        run_id="run",
        spec=spec,
        run_dir=None if run_dir is None else str(run_dir),
        cache_path=None if cache_path is None else str(cache_path),
        identities=identities or {},
    )
    events: list[Any] = []
    finished: list[RunFinished] = []
    pools: list[FakeWorkers] = []

    async def send(data: bytes) -> None:
        message = protocol.to_supervisor.decode(data)
        if isinstance(message, EventBatch):
            events.extend(message.events)
        else:
            assert isinstance(message, RunFinished)
            finished.append(message)

    def make_pool(host: PoolHost, size: int) -> Pool:
        pools.append(FakeWorkers(host, size, script))
        return pools[-1]

    coordinator = Coordinator(message, send, launch=script.launch, pool=make_pool)
    async with trio.open_nursery() as nursery:
        if during is not None:
            nursery.start_soon(during, coordinator)
        status = await coordinator.run()
        nursery.cancel_scope.cancel()
    assert [f.status for f in finished] == [status], "one RunFinished, after every event"
    return Run(status, events, pools[0] if pools else None)


# --- scheduling -------------------------------------------------------------------------------


async def test_a_slow_step_does_not_hold_back_an_unrelated_one(autojump_clock: MockClock) -> None:
    script = Script({"slow": [Act(seconds=10)], "fast": [Act(seconds=1)]})
    result = await run([step("slow"), step("fast"), step("after_fast", "fast")], script)
    assert result.status == "succeeded"
    began = script.start_time("slow")
    assert script.start_time("after_fast") - began == pytest.approx(1.0), "ready-set, not levels"


async def test_max_concurrent_is_respected(autojump_clock: MockClock) -> None:
    script = Script()
    result = await run([step(f"s{i}") for i in range(7)], script, max_concurrent=3)
    assert result.status == "succeeded"
    assert script.peak == 3
    assert trio.current_time() == pytest.approx(3.0, abs=0.01), "three rounds of one second"


async def test_ready_steps_start_in_priority_order(autojump_clock: MockClock) -> None:
    script = Script()
    steps = [step("low"), step("high", priority=10), step("mid", priority=5), step("also_low")]
    await run(steps, script, max_concurrent=1)
    assert script.order() == ["high", "mid", "low", "also_low"]


async def test_a_resource_pool_is_never_oversubscribed(autojump_clock: MockClock) -> None:
    script = Script()
    steps = [step(f"gpu{i}", uses=("gpu",)) for i in range(4)] + [step("cpu")]
    result = await run(steps, script, max_concurrent=4, resources={"gpu": 2})
    assert result.status == "succeeded"
    gpu_starts = sorted(at for s, _a, at in script.started if s.startswith("gpu"))
    assert gpu_starts == pytest.approx([gpu_starts[0]] * 2 + [gpu_starts[0] + 1.0] * 2)
    assert script.start_time("cpu") == gpu_starts[0], "a step that uses nothing does not wait"


async def test_each_upstream_result_reaches_its_dependent(autojump_clock: MockClock) -> None:
    seen: dict[str, Any] = {}
    script = Script()

    async def launch(step: StepSpec, start: StartStep, emit: Emit, report: Report) -> None:
        seen[step.id] = protocol.decode_value(start.kwargs)
        await script.launch(step, start, emit, report)

    spec = WorkflowSpec(
        name="wf",
        steps=(step("a", args={"n": 1}), step("b", "a", inputs={"a": "value"})),
        max_concurrent=2,
    )
    message = RunWorkflow(version=protocol.PROTOCOL_VERSION, run_id="r", spec=spec)

    async def send(_: bytes) -> None:
        pass

    assert await Coordinator(message, send, launch=launch).run() == "succeeded"
    assert seen == {"a": {"n": 1}, "b": {"value": "a"}}


# --- failures ---------------------------------------------------------------------------------


async def test_dependents_of_a_failure_are_skipped_naming_it_and_the_rest_runs(
    autojump_clock: MockClock,
) -> None:
    script = Script({"bad": [fails()]})
    steps = [step("bad"), step("child", "bad"), step("grandchild", "child"), step("other")]
    result = await run(steps, script)
    assert result.status == "failed"
    assert result.statuses() == {
        "bad": "failed",
        "child": "skipped",
        "grandchild": "skipped",
        "other": "succeeded",
    }
    assert result.last("child").because == "bad"
    assert result.last("grandchild").because == "bad", "the ancestor that failed, not the parent"
    assert "child" not in script.order()


async def test_fail_fast_cancels_running_steps_and_skips_the_rest_naming_the_cause(
    autojump_clock: MockClock,
) -> None:
    script = Script({"bad": [fails(seconds=1)], "slow": [Act(seconds=100)]})
    steps = [step("bad"), step("slow"), step("after_slow", "slow"), step("queued")]
    result = await run(steps, script, max_concurrent=2, on_failure="fail_fast")
    assert result.status == "failed"
    assert result.statuses() == {
        "bad": "failed",
        "slow": "cancelled",
        "after_slow": "skipped",
        "queued": "skipped",
    }
    assert "'bad'" in result.last("slow").reason
    assert result.last("after_slow").because == "bad"
    assert result.last("queued").because == "bad"
    assert sorted(script.order()) == ["bad", "slow"], "nothing starts after the failure"
    assert trio.current_time() < 2


async def test_a_cancelled_run_stops_running_steps_and_skips_the_rest(
    autojump_clock: MockClock,
) -> None:
    async def cancel_soon(coordinator: Coordinator) -> None:
        await trio.sleep(0.5)
        coordinator.cancel("stop")

    script = Script({"slow": [Act(seconds=100)]})
    result = await run([step("slow"), step("after", "slow")], script, during=cancel_soon)
    assert result.status == "cancelled"
    assert result.last("slow") == StepCancelled(
        step="slow", attempt=1, reason="stop", duration_s=result.last("slow").duration_s
    )
    assert result.last("after") == StepSkipped(step="after", because=None)


# --- retries ----------------------------------------------------------------------------------


async def test_retries_are_counted_and_wait_the_backoff_drawn(autojump_clock: MockClock) -> None:
    script = Script({"flaky": [fails(), fails(), OK]})
    flaky = step("flaky", retries=3, retry_delay=10.0, retry_backoff=2.0, retry_max_delay=60.0)
    result = await run([flaky, step("after", "flaky")], script)
    assert result.status == "succeeded"
    assert script.attempts("flaky") == [1, 2, 3]
    failures = result.of(StepFailed, "flaky")
    assert [(f.attempt, f.will_retry) for f in failures] == [(1, True), (2, True)]
    for failure, base in zip(failures, [10.0, 20.0], strict=True):
        assert base / 2 <= failure.retry_in_s <= base, "equal jitter"
        began = script.start_time("flaky", failure.attempt)
        next_start = script.start_time("flaky", failure.attempt + 1)
        assert next_start - began == pytest.approx(1.0 + failure.retry_in_s)
    assert result.last("flaky").attempt == 3
    assert script.attempts("after") == [1]


async def test_the_last_attempt_fails_the_step_without_a_retry(autojump_clock: MockClock) -> None:
    script = Script({"bad": [fails()]})
    result = await run([step("bad", retries=2, retry_delay=0.1)], script)
    assert script.attempts("bad") == [1, 2, 3]
    last = result.last("bad")
    assert (last.attempt, last.will_retry, last.retry_in_s) == (3, False, None)


async def test_retry_on_retries_only_the_named_error_types(autojump_clock: MockClock) -> None:
    script = Script({"other": [fails("KeyError")], "named": [fails("ValueError")]})
    steps = [
        step("other", retries=3, retry_delay=0.1, retry_on=("ValueError",)),
        step("named", retries=2, retry_delay=0.1, retry_on=("ValueError",)),
    ]
    await run(steps, script)
    assert script.attempts("other") == [1]
    assert script.attempts("named") == [1, 2, 3]


async def test_a_timed_out_attempt_is_retried_like_a_failure(autojump_clock: MockClock) -> None:
    script = Script({"stuck": [fails("StepTimeout"), OK]})
    result = await run([step("stuck", timeout=5, retries=1, retry_delay=0.1)], script)
    assert result.status == "succeeded"
    first = result.of(StepFailed, "stuck")[0]
    assert first.timed_out and first.will_retry
    assert script.start_time("stuck", 2) == pytest.approx(5 + first.retry_in_s)


async def test_fail_fast_during_a_retry_delay_cancels_the_retry(autojump_clock: MockClock) -> None:
    script = Script({"bad": [fails(seconds=2)], "flaky": [fails(seconds=1)]})
    steps = [step("bad"), step("flaky", retries=5, retry_delay=100.0), step("after", "flaky")]
    result = await run(steps, script, on_failure="fail_fast")
    assert script.attempts("flaky") == [1], "the retry waiting its turn never starts"
    assert result.statuses()["flaky"] == "cancelled"
    assert result.last("after").because == "bad"
    assert trio.current_time() < 3


# --- the result cache -------------------------------------------------------------------------


async def test_a_cache_hit_starts_nothing(tmp_path: Path, autojump_clock: MockClock) -> None:
    cache_path, identities = tmp_path / "cache.db", {"cached": "fn-hash"}
    steps = [step("cached", args={"n": 1}, cache=True), step("after", "cached")]
    spec = WorkflowSpec(name="wf", steps=tuple(steps))
    with StepCache(spec, identities, cache_path) as cache:
        key, hit = cache.lookup("cached", {"n": 1}, {})
        assert hit is None
        cache.store("cached", key, protocol.encode_value(42, step="cached"))
    script = Script()
    result = await run(steps, script, cache_path=cache_path, identities=identities)
    assert result.status == "succeeded"
    assert script.order() == ["after"], "the cached step did not run"
    hit_event = result.last("cached")
    assert (hit_event.cached, hit_event.attempt) == (True, 0)
    assert protocol.decode_value(hit_event.result) == 42


# --- pool mode, with fake workers -------------------------------------------------------------


async def test_a_worker_death_fails_its_running_step_and_requeues_the_rest(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    script = Script({"victim": [Act(dies=True), OK]})
    steps = [step("victim", retries=1, retry_delay=0.1), step("bystander")]
    result = await run(steps, script, run_dir=tmp_path, actors="pool", workers=1)
    assert result.pool is not None and result.pool.batches[0] == ("victim", "bystander")
    assert result.status == "succeeded"
    death = result.of(StepFailed, "victim")[0]
    assert (death.attempt, death.error.type, death.will_retry) == (1, "ProcessDied", True)
    assert "killed by SIGKILL" in death.error.message
    assert script.attempts("bystander") == [1], "given back unstarted: no attempt used up"
    assert result.last("bystander").attempt == 1
    assert script.attempts("victim") == [1, 2]


async def test_a_chain_goes_to_one_worker_in_one_batch(autojump_clock: MockClock) -> None:
    script = Script()
    steps = [step("s0")] + [step(f"s{i}", f"s{i - 1}") for i in range(1, 5)]
    result = await run(steps, script, actors="pool", workers=2)
    assert result.status == "succeeded"
    assert result.pool is not None and result.pool.batches == [("s0", "s1", "s2", "s3", "s4")]
    assert all(script.attempts(f"s{i}") == [1] for i in range(5))


async def test_a_failure_inside_a_chain_skips_the_rest_of_it(autojump_clock: MockClock) -> None:
    script = Script({"s2": [fails()]})
    steps = [step("s0")] + [step(f"s{i}", f"s{i - 1}") for i in range(1, 5)]
    result = await run(steps, script, actors="pool", workers=1)
    assert script.order() == ["s0", "s1", "s2"]
    assert {result.last(f"s{i}").because for i in (3, 4)} == {"s2"}


async def test_fail_fast_in_pool_mode_cancels_the_running_step(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    script = Script({"bad": [fails(seconds=1)], "slow": [Act(seconds=100)]})
    steps = [step("bad"), step("slow"), step("later", "slow")]
    result = await run(
        steps, script, run_dir=tmp_path, actors="pool", workers=2, on_failure="fail_fast"
    )
    assert result.statuses() == {"bad": "failed", "slow": "cancelled", "later": "skipped"}
    assert trio.current_time() < 2


# --- Pool.give_back on its own ----------------------------------------------------------------


class Host:
    """A PoolHost that records what the pool hands it."""

    def __init__(self, run_dir: Path, cancel_reason: str | None = None) -> None:
        self.run_dir: str | None = str(run_dir)
        self.cancel_reason = cancel_reason
        self.delivered: list[Outcome] = []
        self.unchained: list[str] = []

    def deliver(self, outcome: Outcome) -> None:
        self.delivered.append(outcome)

    def emit(self, event: StepStarted) -> None:
        raise AssertionError("give_back emits nothing")

    def timeout_of(self, step_id: str) -> float | None:
        return None

    def unchain(self, step_id: str) -> None:
        self.unchained.append(step_id)


def start(step_id: str, after: str | None = None, timeout: float | None = None) -> StartStep:
    return StartStep(
        version=protocol.PROTOCOL_VERSION,
        run_id="run",
        step=step_id,
        attempt=1,
        target="tests.steps:noop",
        kwargs=msgspec.Raw(protocol.encode_value({}, step=step_id)),
        after=after,
        timeout=timeout,
    )


def dead_worker(host: Host, starts: list[StartStep], ledger: tuple[bytes, str] | None) -> Pool:
    pool = Pool(host, 1)
    worker = pool.workers[0]
    worker.process = ProcessHandle(FakeProcess(4242, returncode=-9))
    pool.assign(worker, starts)
    if ledger is not None:
        assert host.run_dir is not None
        writer = Ledger(host.run_dir, 4242)
        writer.write(*ledger)
        assert writer.fd is not None
        os.close(writer.fd)
    pool.give_back(worker)
    assert not worker.held and not worker.batches and worker.current is None
    return pool


async def test_give_back_fails_the_step_the_ledger_names_and_requeues_the_others(
    tmp_path: Path,
) -> None:
    host = Host(tmp_path)
    dead_worker(host, [start("a"), start("b"), start("c")], (Ledger.RUNNING, "b"))
    assert host.delivered[0] == Requeue("a")
    assert host.delivered[2] == Requeue("c")
    failed = host.delivered[1]
    assert isinstance(failed, StepFailed) and failed.step == "b"
    assert failed.error.type == "ProcessDied"
    assert failed.error.message == "worker process (worker:0) 4242 was killed by SIGKILL"
    assert not (tmp_path / "worker-4242").exists()


async def test_give_back_between_steps_requeues_everything(tmp_path: Path) -> None:
    host = Host(tmp_path)
    dead_worker(host, [start("a"), start("b")], (Ledger.DONE, "a"))
    assert host.delivered == [Requeue("a"), Requeue("b")]


async def test_give_back_reports_a_timeout_the_ledger_records(tmp_path: Path) -> None:
    host = Host(tmp_path)
    dead_worker(host, [start("slow", timeout=3)], (Ledger.TIMED_OUT, "slow"))
    [failed] = host.delivered
    assert isinstance(failed, StepFailed) and failed.timed_out
    assert failed.error == ErrorInfo(type="StepTimeout", message="step 'slow' timed out after 3 s")


async def test_give_back_unchains_a_follower_whose_upstream_was_lost(tmp_path: Path) -> None:
    host = Host(tmp_path)
    dead_worker(host, [start("up"), start("follower", after="up")], (Ledger.RUNNING, "follower"))
    assert host.delivered == [Requeue("up"), Requeue("follower")]
    assert host.unchained == ["follower"]


async def test_give_back_of_a_cancelled_worker_cancels_its_running_step(tmp_path: Path) -> None:
    host = Host(tmp_path, cancel_reason="fail_fast: step 'x' failed")
    pool = Pool(host, 1)
    worker = pool.workers[0]
    process = FakeProcess(4343)
    worker.process = ProcessHandle(process)
    pool.assign(worker, [start("a"), start("b")])
    writer = Ledger(host.run_dir, 4343)
    writer.write(Ledger.RUNNING, "a")
    assert writer.fd is not None
    os.close(writer.fd)
    pool.cancel_all()
    assert process.returncode == -9
    pool.give_back(worker)
    cancelled, requeued = host.delivered
    assert isinstance(cancelled, StepCancelled)
    assert (cancelled.step, cancelled.reason) == ("a", "fail_fast: step 'x' failed")
    assert requeued == Requeue("b")
