"""What the journal stores, and how its records are read back into a run's document.

The journal's events are the coordinator's own :mod:`mcpp.protocol` events plus two records of
its own: :class:`RunStarted` (one per supervisor session: the first run and each resume) and
:class:`RunEnded` (the session's final status). :func:`replay` folds a run's records, in order,
into a :class:`~mcpp.supervisor.results.RunRecorder`:

- each new session resets every step it does not carry over (``RunStarted.completed``),
  keeping its attempt history (a resumed session's coordinator numbers its attempts after
  the earlier sessions': ``RunWorkflow.attempts_before``);
- records of steps the latest spec no longer has are left out (a step removed before a
  resume is dropped from the document);
- ``duration_s`` is the sum of the sessions' durations (a session that did not end counts up
  to its last record).
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass, field
from typing import Any, Final, get_args

import msgspec

from mcpp import protocol
from mcpp.status import StepState
from mcpp.supervisor.results import RunRecorder, RunResult, RunStatus, StepResult
from mcpp.workflow.spec import WorkflowSpec

__all__ = [
    "JournalRun",
    "Replayed",
    "RunEnded",
    "RunStarted",
    "RunSummary",
    "decode_record",
    "encode_record",
    "iso",
    "replay",
    "spec_hash",
]


class RunStarted(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="run_started"):
    """A supervisor session of the run began (the first run, or a resume).

    ``pid`` and ``pid_started`` (its process create time) tell whether that supervisor still
    lives; ``completed`` lists the steps carried over from earlier sessions; ``functions``
    maps each step to the hash of its function's code at the session's start
    (:func:`mcpp.cache.keys.function_hash`); ``rerun`` names the steps that had succeeded and
    run again in this session, with the reason.
    """

    pid: int
    pid_started: float
    completed: tuple[str, ...] = ()
    functions: dict[str, str] = {}
    rerun: dict[str, str] = {}


class RunEnded(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="run_ended"):
    """The session ended with the run result ``status`` after ``duration_s`` seconds."""

    status: str
    duration_s: float


Record = (
    RunStarted
    | RunEnded
    | protocol.StepStarted
    | protocol.StepSucceeded
    | protocol.StepFailed
    | protocol.StepSkipped
    | protocol.StepCancelled
    | protocol.RunFinished
)
RECORD_TYPES: Final = get_args(Record)
_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(Record)


def encode_record(record: Any) -> bytes:
    """MessagePack of a journal record."""
    return _encoder.encode(record)


def decode_record(data: bytes) -> Any:
    """The journal record of ``data``; raises ``msgspec.DecodeError``."""
    return _decoder.decode(data)


def spec_hash(spec: WorkflowSpec) -> str:
    """The SHA-256 (hex) of ``spec``'s MessagePack encoding."""
    return hashlib.sha256(_encoder.encode(spec)).hexdigest()


def iso(at: float) -> str:
    """``at`` (seconds since the epoch) in ISO 8601, UTC, milliseconds."""
    return datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat(timespec="milliseconds")


class RunSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One line of ``status``: ``started_at`` is ISO 8601 (UTC, milliseconds)."""

    run_id: str
    workflow: str
    status: RunStatus
    started_at: str
    duration_s: float


class JournalRun(msgspec.Struct, kw_only=True):
    """Everything the journal knows about one run.

    ``spec`` is the latest session's; ``completed`` maps each step that succeeded (and was not
    reset by a later session) to its encoded result; ``functions`` is the latest session's
    ``RunStarted.functions``; ``result`` is the run's result document as ``spawn --json``
    printed it (or, for a run that did not end, as far as it got); ``running_pid`` is the pid
    of a live supervisor of it. ``stored`` names the file (:mod:`mcpp.supervisor.blobs`, hash
    verified as it was read) that holds each result of ``completed`` kept out of line.
    """

    run_id: str
    spec: WorkflowSpec
    spec_hash: str
    source: str | None
    created_at: float
    completed: dict[str, bytes]
    result: RunResult
    running_pid: int | None
    functions: dict[str, str] = {}
    stored: dict[str, str] = {}


@dataclass
class Replayed:
    """What :func:`replay` read: the recorder, the last session's end, the totals."""

    recorder: RunRecorder
    ended: RunEnded | None
    duration_s: float
    resumed_at: list[float] = field(default_factory=list)
    functions: dict[str, str] = field(default_factory=dict)

    def completed(self) -> dict[str, bytes]:
        """The encoded results of the steps that stand succeeded."""
        steps = self.recorder.steps
        return {
            step_id: raw if isinstance(raw, bytes) else bytes(raw)
            for step_id, raw in self.recorder.raw_results.items()
            if steps[step_id].status == StepState.SUCCEEDED
        }

    def document(self, status: RunStatus) -> RunResult:
        """The run's result document with ``status``, its total time and its resumes."""
        document = self.recorder.result(status)
        document.duration_s = round(self.duration_s, 6)
        document.resumed_at = [iso(at) for at in self.resumed_at]
        return document


def _new_session(recorder: RunRecorder, started: RunStarted) -> None:
    """Reset the steps ``started`` does not carry over, keeping their history."""
    recorder.session += 1
    for step_id, step in list(recorder.steps.items()):
        if step_id in started.completed:
            continue
        recorder.steps[step_id] = StepResult(
            attempts=step.attempts,
            history=step.history,
            rerun_because=started.rerun.get(step_id),
        )
        recorder.raw_results.pop(step_id, None)


def replay(run_id: str, spec: WorkflowSpec, records: list[tuple[float, Any]]) -> Replayed:
    """Fold ``(time, record)`` pairs of one run, in journal order, into its document.

    A record of a step ``spec`` does not have (or ``None``, which only marks a time) is left
    out of the steps but counts for the session's duration.
    """
    recorder = RunRecorder(run_id, spec)
    recorder.session = 0
    done = Replayed(recorder=recorder, ended=None, duration_s=0.0)
    began: float | None = None
    last = 0.0
    for at, record in records:
        match record:
            case RunStarted():
                if began is not None:
                    done.duration_s += done.ended.duration_s if done.ended else last - began
                    done.resumed_at.append(at)
                done.ended, began = None, at
                done.functions = dict(record.functions)
                _new_session(recorder, record)
            case RunEnded():
                done.ended = record
                if record.status == "cancelled":
                    recorder.cancel_unfinished()
            case protocol.RunFinished():
                recorder.apply(record)
            case _ if getattr(record, "step", None) in recorder.steps:
                recorder.apply(record)  # attempts are numbered across sessions already
        last = at
    if began is not None:
        done.duration_s += done.ended.duration_s if done.ended else last - began
    # The recorder's own clock is not this run's: the document takes the journal's times.
    recorder.started, recorder.finished = 0.0, done.duration_s
    return done
