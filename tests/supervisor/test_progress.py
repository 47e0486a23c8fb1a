"""The progress model and its plain lines (mcpp/supervisor/progress.py), fed real protocol
events: a step waiting for its retry is shown as ``retrying`` with its delay, counted apart
from ``running``. Pure policy: no processes."""

from __future__ import annotations

import io

from mcpp import protocol
from mcpp.supervisor.progress import RETRYING, Progress, ProgressModel, plain_line
from mcpp.supervisor.results import RunRecorder
from mcpp.workflow.spec import StepSpec, WorkflowSpec

SPEC = WorkflowSpec(
    name="wf",
    steps=tuple(StepSpec(id=name, run="m:f", retries=2) for name in ("a", "b", "c")),
    max_concurrent=2,
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def started(step: str, attempt: int = 1) -> protocol.StepStarted:
    return protocol.StepStarted(step=step, attempt=attempt, pid=4242, at=0.0)


def failed(step: str, *, retry_in_s: float | None, attempt: int = 1) -> protocol.StepFailed:
    return protocol.StepFailed(
        step=step,
        attempt=attempt,
        error=protocol.ErrorInfo(type="IOError", message="flaky"),
        duration_s=0.1,
        will_retry=retry_in_s is not None,
        retry_in_s=retry_in_s,
    )


def model_after(*events: object, clock: Clock | None = None) -> ProgressModel:
    recorder = RunRecorder("r", SPEC)
    model = ProgressModel.from_recorder(recorder)
    if clock is not None:
        model.clock = clock
    for event in events:
        recorder.apply(event)  # type: ignore[arg-type]
        model.apply(event)
    return model


def test_a_step_waiting_for_its_retry_is_counted_apart_from_running() -> None:
    model = model_after(started("a"), started("b"), failed("a", retry_in_s=1.5), started("c"))
    assert model.counts() == {"retrying": 1, "running": 2}
    assert model.statuses["a"] == RETRYING


def test_the_retry_row_shows_the_delay_counting_down() -> None:
    clock = Clock()
    model = model_after(started("a"), failed("a", retry_in_s=1.5), clock=clock)
    assert model.rows() == [("↻", "a", "attempt 1 failed (IOError); retrying in 1.5 s")]
    clock.now += 1.0
    assert model.retry_text("a") == "attempt 1 failed (IOError); retrying in 0.5 s"
    clock.now += 5.0
    assert model.retry_text("a") == "attempt 1 failed (IOError); retrying in 0.0 s"


def test_the_next_attempt_makes_the_step_running_again() -> None:
    model = model_after(started("a"), failed("a", retry_in_s=1.5), started("a", attempt=2))
    assert model.counts() == {"pending": 2, "running": 1}
    assert model.rows() == [("▶", "a", "attempt 2")]
    assert model.retries == {}


def test_a_final_failure_is_failed_not_retrying() -> None:
    model = model_after(started("a"), failed("a", retry_in_s=None, attempt=3))
    assert model.counts() == {"failed": 1, "pending": 2}


def test_the_plain_line_of_a_retry_names_the_delay() -> None:
    line = plain_line(failed("a", retry_in_s=1.5))
    assert line == "retrying   a  IOError: flaky (attempt 1; retrying in 1.5 s)"


def test_plain_lines_go_to_a_stream_that_is_not_a_terminal() -> None:
    stream = io.StringIO()
    recorder = RunRecorder("r", SPEC)
    with Progress(stream=stream) as progress:
        for event in (started("a"), failed("a", retry_in_s=1.5)):
            recorder.apply(event)
            progress.on_event(recorder, event)
    assert stream.getvalue() == (
        "[mcpp] retrying   a  IOError: flaky (attempt 1; retrying in 1.5 s)\n"
    )
    assert progress.model is not None and progress.model.counts()["retrying"] == 1


def test_the_api_view_prints_no_lines_off_a_terminal() -> None:
    stream = io.StringIO()
    recorder = RunRecorder("r", SPEC)
    with Progress(stream=stream, lines=False) as progress:
        event = failed("a", retry_in_s=1.5)
        recorder.apply(event)
        progress.on_event(recorder, event)
    assert stream.getvalue() == ""


def test_a_closed_stream_stops_the_lines_without_raising() -> None:
    stream = io.StringIO()
    recorder = RunRecorder("r", SPEC)
    progress = Progress(stream=stream)
    stream.close()
    event = failed("a", retry_in_s=1.5)
    recorder.apply(event)
    progress.on_event(recorder, event)  # must not raise
    assert progress.quiet
