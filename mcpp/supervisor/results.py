"""Run results: what a finished (or interrupted) run reports, built from its events.

:class:`RunRecorder` applies the coordinator's events (``mcpp.protocol`` messages) to per-step
records; the supervisor, the journal and ``status`` all use it, so a result read back from the
journal is the same document ``spawn --json`` printed.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Final, Literal

import msgspec

from mcpp import protocol, spill
from mcpp.errors import RunFailed
from mcpp.protocol import (
    ErrorInfo,
    RunFinished,
    StepCancelled,
    StepFailed,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)
from mcpp.status import StepState
from mcpp.workflow.spec import WorkflowSpec

__all__ = ["Attempt", "RunRecorder", "RunResult", "RunStatus", "StepResult", "StepStatus"]

StepStatus = StepState  # the one vocabulary (mcpp.status); the JSON holds its values
RunStatus = Literal["running", "succeeded", "failed", "cancelled", "interrupted"]
SHOWN_FAILURES = 3
LAZY_DECODE: Final = spill.SPILL_THRESHOLD
"""Results of this many encoded bytes or more are decoded when the document is made."""
MESSAGE_CHARS = 500


def _one_line(text: str) -> str:
    """``text`` on one line, cut to :data:`MESSAGE_CHARS` characters."""
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 3] + "..."


class Attempt(msgspec.Struct, kw_only=True):
    """One finished attempt of a step: how it ended and, if another followed, the backoff.

    ``attempt`` counts over the run's sessions (a resume goes on from the earlier attempts);
    ``session`` is 1 for the first run, 2 for its first resume, and so on.
    """

    attempt: int
    status: StepStatus
    duration_s: float
    error_type: str | None = None
    retry_in_s: float | None = None
    error_message: str | None = None
    session: int = 1


class StepResult(msgspec.Struct, kw_only=True):
    """One step's record. ``result`` is the decoded return value (None unless succeeded);
    ``history`` lists every finished attempt in order. ``ended_processes`` counts processes
    the step's last attempt left running, which mcpp ended when the attempt was over.
    ``rerun_because`` says why a step that had succeeded ran again on a resume (its
    definition or its function's code changed, or an upstream step ran again)."""

    status: StepStatus = StepState.PENDING
    attempts: int = 0
    duration_s: float = 0.0
    result: Any = None
    error: ErrorInfo | None = None
    skipped_because: str | None = None
    pid: int | None = None
    cached: bool = False
    ended_processes: int = 0
    history: list[Attempt] = []
    rerun_because: str | None = None


class RunResult(msgspec.Struct, kw_only=True):
    """A run's result document (the JSON of ``spawn --json``).

    ``duration_s`` is the total over the run's sessions; ``resumed_at`` holds the start of
    each resume (ISO 8601, UTC), empty for a run that was never resumed.
    """

    run_id: str
    workflow: str
    status: RunStatus
    duration_s: float
    steps: dict[str, StepResult]
    resumed_at: list[str] = []

    @property
    def succeeded(self) -> bool:
        """True if every step succeeded."""
        return self.status == "succeeded"

    def to_json(self) -> bytes:
        """Encode as JSON (the ``spawn --json`` document). A MessagePack extension value in a
        result (:func:`json_hook`) is an object ``{"msgpack_ext": CODE, "data": BASE64}``."""
        return _json.encode(self)

    def failures(self) -> dict[str, StepResult]:
        """The steps that failed, timed out or were cancelled, in definition order (skipped
        steps did not run: the failure upstream of them is listed instead)."""
        bad = (StepState.FAILED, StepState.TIMED_OUT, StepState.CANCELLED)
        return {step_id: r for step_id, r in self.steps.items() if r.status in bad}

    def summary_line(self) -> str:
        """One line: the workflow, run id, status, time, counts by status and, for each failed
        step (at most three named), its error on one line, e.g. ``etl: run 0190... failed in
        3.10 s (1 failed, 1 skipped, 2 succeeded); step 'transform' failed: ValueError: bad``."""
        counts = Counter(str(r.status) for r in self.steps.values())
        tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        line = f"{self.workflow}: run {self.run_id} {self.status} in {self.duration_s:.2f} s"
        line += f" ({tally})" if tally else ""
        failures = list(self.failures().items())
        for step_id, record in failures[:SHOWN_FAILURES]:
            line += f"; step {step_id!r} {record.status}"
            if record.error is not None:
                line += f": {_one_line(f'{record.error.type}: {record.error.message}')}"
        if len(failures) > SHOWN_FAILURES:
            line += f"; and {len(failures) - SHOWN_FAILURES} more"
        return line

    def raise_for_status(self) -> None:
        """Raise :class:`~mcpp.errors.RunFailed` unless the run succeeded; its message is
        :meth:`summary_line`, naming each failed step and its error."""
        if self.status != "succeeded":
            raise RunFailed(self.summary_line(), result=self, failed=list(self.failures()))

    @property
    def exit_code(self) -> int:
        """The CLI exit code: 0 succeeded, 130 cancelled or interrupted, 1 otherwise."""
        if self.status == "succeeded":
            return 0
        if self.status in ("cancelled", "interrupted"):
            return 130
        return 1


def json_hook(value: Any) -> Any:
    """The ``enc_hook`` of mcpp's JSON output: a ``msgspec.msgpack.Ext`` in a step's result
    becomes ``{"msgpack_ext": code, "data": bytes}`` (the bytes in base64). Raises
    NotImplementedError for anything else (msgspec reports it as a TypeError)."""
    if isinstance(value, msgspec.msgpack.Ext):
        return {"msgpack_ext": value.code, "data": bytes(value.data)}
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


_json = msgspec.json.Encoder(enc_hook=json_hook)


class RunRecorder:
    """Fold a run's events into step records.

    ``completed`` maps steps that succeeded in an earlier attempt of this run (resume) to their
    encoded results; they start out succeeded. ``raw_results`` holds every succeeded step's
    encoded result. A result of :data:`LAZY_DECODE` bytes or more is kept as it came (for a
    spilled one, a mapping of its file, :func:`mcpp.spill.materialize`) and decoded when the
    document is made (:meth:`result`); until then its record's ``result`` is None.
    """

    __slots__ = (
        "_undecoded",
        "finished",
        "raw_results",
        "run_id",
        "session",
        "spec",
        "started",
        "status",
        "steps",
    )

    def __init__(
        self, run_id: str, spec: WorkflowSpec, completed: dict[str, bytes] | None = None
    ) -> None:
        self.run_id = run_id
        self.spec = spec
        self.started = time.monotonic()
        self.finished: float | None = None
        self.status: RunStatus = "running"
        self.steps = {step.id: StepResult() for step in spec.steps}
        self.raw_results: dict[str, bytes | msgspec.Raw] = {}
        self._undecoded: set[str] = set()
        self.session = 1  # the supervisor session whose attempts are being recorded
        for step_id, raw in (completed or {}).items():
            record = self.steps[step_id]
            record.status = StepState.SUCCEEDED
            if len(raw) >= LAZY_DECODE:
                self._undecoded.add(step_id)
            else:
                record.result = protocol.decode_value(raw)
            self.raw_results[step_id] = bytes(raw)

    def apply(self, event: protocol.Event) -> None:
        """Apply one coordinator event to the records."""
        match event:
            case StepStarted():
                record = self.steps[event.step]
                record.status = StepState.RUNNING
                record.attempts = max(record.attempts, event.attempt)
                record.pid = event.pid
            case StepSucceeded():
                record = self.steps[event.step]
                record.status = StepState.SUCCEEDED
                record.attempts = max(record.attempts, event.attempt)
                record.duration_s = event.duration_s
                record.error = None
                record.cached = event.cached
                record.ended_processes = event.ended_processes
                if len(event.result) >= LAZY_DECODE:  # kept as it came, decoded later
                    record.result = None
                    self._undecoded.add(event.step)
                    self.raw_results[event.step] = event.result
                else:  # a view into its message: copied, so that is not kept alive
                    record.result = protocol.decode_value(event.result)
                    self._undecoded.discard(event.step)
                    self.raw_results[event.step] = bytes(event.result)
                if not event.cached:
                    record.history.append(
                        Attempt(
                            attempt=event.attempt,
                            status=StepState.SUCCEEDED,
                            duration_s=event.duration_s,
                            session=self.session,
                        )
                    )
            case StepFailed():
                record = self.steps[event.step]
                record.attempts = max(record.attempts, event.attempt)
                record.duration_s = event.duration_s
                record.error = event.error
                record.ended_processes = event.ended_processes
                status: StepStatus = StepState.TIMED_OUT if event.timed_out else StepState.FAILED
                if not event.will_retry:
                    record.status = status
                record.history.append(
                    Attempt(
                        attempt=event.attempt,
                        status=status,
                        duration_s=event.duration_s,
                        error_type=event.error.type,
                        retry_in_s=event.retry_in_s,
                        error_message=event.error.message,
                        session=self.session,
                    )
                )
            case StepSkipped():
                record = self.steps[event.step]
                record.status = StepState.SKIPPED
                record.skipped_because = event.because
            case StepCancelled():
                record = self.steps[event.step]
                record.status = StepState.CANCELLED
                record.attempts = max(record.attempts, event.attempt)
                record.duration_s = event.duration_s
                record.error = ErrorInfo(type="Cancelled", message=event.reason)
            case RunFinished():
                self.status = event.status  # type: ignore[assignment]
                self.finished = time.monotonic()

    def cancel_unfinished(self, *, interrupted: bool = False) -> None:
        """After a cancelled run: running and pending steps become ``cancelled``.

        With ``interrupted`` (the supervisor died, as the journal tells), pending steps stay
        pending and running steps become ``cancelled`` with an ``Interrupted`` error.
        """
        for record in self.steps.values():
            if record.status == StepState.RUNNING or (
                record.status == StepState.PENDING and not interrupted
            ):
                record.status = StepState.CANCELLED
                if interrupted:
                    record.error = ErrorInfo(
                        type="Interrupted", message="the supervisor stopped while the step ran"
                    )

    def result(self, status: RunStatus | None = None) -> RunResult:
        """Return the result document; ``status`` overrides the recorded run status.

        Large results not decoded yet are decoded now. Raises what
        :func:`mcpp.protocol.decode_value` raises for one that cannot be.
        """
        for step_id in self._undecoded:
            raw = self.raw_results.get(step_id)
            if raw is not None and self.steps[step_id].status == StepState.SUCCEEDED:
                self.steps[step_id].result = protocol.decode_value(raw)
        self._undecoded.clear()
        end = self.finished if self.finished is not None else time.monotonic()
        return RunResult(
            run_id=self.run_id,
            workflow=self.spec.name,
            status=status or self.status,
            duration_s=round(end - self.started, 6),
            steps=self.steps,
        )
