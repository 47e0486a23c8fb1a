"""The scheduler's pure rules: which ready step goes first, slots, and the retry policy."""

from __future__ import annotations

import random

import pytest

from mcpp.actors.scheduler import ReadyQueue, Slots, retry_delay, should_retry
from mcpp.dag import Graph
from mcpp.workflow.spec import StepSpec, WorkflowSpec


def step(step_id: str, *depends_on: str, **options: object) -> StepSpec:
    return StepSpec(id=step_id, run="tests.steps:noop", depends_on=depends_on, **options)  # type: ignore[arg-type]


def queue_of(*steps: StepSpec, **options: object) -> ReadyQueue:
    spec = WorkflowSpec(name="wf", steps=steps, **options)  # type: ignore[arg-type]
    return ReadyQueue(spec, Graph({s.id: s.depends_on for s in steps}))


def drain(queue: ReadyQueue) -> list[str]:
    order = []
    while (popped := queue.pop(lambda _: True)) is not None:
        order.append(popped.id)
    return order


class Fixed(random.Random):
    """A random source that always draws ``value``."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


# --- ReadyQueue -------------------------------------------------------------------------------


def test_higher_priority_pops_first_then_definition_order() -> None:
    queue = queue_of(
        step("low", priority=0),
        step("high", priority=10),
        step("mid", priority=5),
        step("also_low", priority=0),
    )
    for step_id in ["also_low", "low", "mid", "high"]:  # push order does not matter
        queue.push(step_id)
    assert drain(queue) == ["high", "mid", "low", "also_low"]


def test_a_step_inherits_the_priority_of_its_dependents() -> None:
    queue = queue_of(
        step("other", priority=5), step("ancestor"), step("urgent", "ancestor", priority=10)
    )
    queue.push("other")
    queue.push("ancestor")
    assert drain(queue) == ["ancestor", "other"]


def test_the_earlier_deadline_breaks_a_priority_tie() -> None:
    queue = queue_of(step("none"), step("late", deadline=60), step("soon", deadline=5))
    for step_id in ["none", "late", "soon"]:
        queue.push(step_id)
    assert drain(queue) == ["soon", "late", "none"], "no deadline sorts last"


def test_the_longer_critical_path_breaks_a_tie() -> None:
    queue = queue_of(step("short"), step("long"), step("next1", "long"), step("next2", "next1"))
    queue.push("short")
    queue.push("long")
    assert drain(queue) == ["long", "short"]


def test_pop_passes_over_a_step_that_cannot_start_only_when_scanning() -> None:
    queue = queue_of(step("big", priority=9, uses=("gpu",)), step("small"))
    queue.push("big")
    queue.push("small")

    def no_gpu(s: StepSpec) -> bool:
        return not s.uses

    assert queue.pop(no_gpu, scan=False) is None, "without scan only the best step is tried"
    popped = queue.pop(no_gpu)
    assert popped is not None and popped.id == "small"
    assert len(queue) == 1, "the step passed over stays queued"
    assert queue.pop(no_gpu) is None
    assert queue.clear() == ["big"]
    assert len(queue) == 0


def test_clear_returns_every_queued_step_in_pop_order() -> None:
    queue = queue_of(step("a"), step("b", priority=3), step("c"))
    for step_id in ["c", "a", "b"]:
        queue.push(step_id)
    assert queue.clear() == ["b", "a", "c"]
    assert queue.pop(lambda _: True) is None


# --- Slots ------------------------------------------------------------------------------------


def test_slots_bound_concurrency_and_come_back() -> None:
    slots = Slots(2, {})
    plain = step("a")
    slots.take(plain)
    slots.take(plain)
    assert not slots.can_start(plain)
    slots.give_back(plain)
    assert slots.can_start(plain)


def test_a_resource_pool_bounds_the_steps_that_use_it_only() -> None:
    slots = Slots(10, {"gpu": 1})
    gpu, cpu = step("gpu", uses=("gpu",)), step("cpu")
    slots.take(gpu)
    assert not slots.can_start(gpu)
    assert slots.can_start(cpu)
    slots.give_back(gpu)
    assert slots.can_start(gpu)


def test_an_unknown_resource_never_fits() -> None:
    assert not Slots(1, {}).can_start(step("a", uses=("tape",)))


def test_slot_false_takes_resources_but_no_slot() -> None:
    slots = Slots(1, {"gpu": 2})
    gpu = step("gpu", uses=("gpu",))
    slots.take(gpu, slot=False)
    assert slots.can_start(step("other")), "a pooled step takes no slot"
    assert slots.can_start(gpu)
    slots.take(gpu, slot=False)
    assert not slots.can_start(gpu, slot=False), "but it takes its resources"
    slots.give_back(gpu, slot=False)
    assert slots.can_start(gpu, slot=False)


# --- retry_delay and should_retry -------------------------------------------------------------


@pytest.mark.parametrize(("attempt", "base"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)])
def test_backoff_grows_to_the_cap_with_equal_jitter(attempt: int, base: float) -> None:
    flaky = step("a", retry_delay=1.0, retry_backoff=2.0, retry_max_delay=5.0)
    assert retry_delay(flaky, attempt, Fixed(0.0)) == pytest.approx(base / 2)
    assert retry_delay(flaky, attempt, Fixed(0.999999)) == pytest.approx(base, rel=1e-5)
    draws = [retry_delay(flaky, attempt, random.Random(seed)) for seed in range(200)]
    assert all(base / 2 <= d <= base for d in draws)
    assert max(draws) - min(draws) > base / 4, "the draw spreads over the jitter range"


def test_a_backoff_too_large_for_a_float_is_the_cap() -> None:
    flaky = step("a", retry_delay=1.0, retry_backoff=10.0, retry_max_delay=30.0)
    assert retry_delay(flaky, 10_000, Fixed(0.0)) == 15.0


def test_no_delay_means_an_immediate_retry() -> None:
    assert retry_delay(step("a", retry_delay=0.0), 3) == 0.0


def test_retries_count_the_extra_attempts() -> None:
    twice = step("a", retries=2)
    assert should_retry(twice, 1, "ValueError")
    assert should_retry(twice, 2, "ValueError")
    assert not should_retry(twice, 3, "ValueError")
    assert not should_retry(step("never"), 1, "ValueError")


def test_retry_on_names_the_error_types_that_retry() -> None:
    picky = step("a", retries=3, retry_on=("KeyError", "StepTimeout"))
    assert should_retry(picky, 1, "KeyError")
    assert should_retry(picky, 1, "StepTimeout")
    assert not should_retry(picky, 1, "ValueError")
