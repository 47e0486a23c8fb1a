"""Every message that crosses a process boundary in mcpp.

Messages are frozen msgspec Structs in one tagged union (the tag field is ``"kind"``), encoded
as MessagePack. Each direction has one decoder, built once, that accepts only the messages of
that direction::

    supervisor  --RunWorkflow, CancelRun-->               coordinator
    coordinator --StartStep, StartBatch, CancelStep-->    step / worker actor
    step        --StepStarted, StepSucceeded, StepFailed, Heartbeat, ResultBatch--> coordinator
    coordinator --EventBatch of StepStarted, StepSucceeded, StepFailed, StepSkipped,
                  StepCancelled; RunFinished-->           supervisor

No message carries the run's secret: every connection between actors is authenticated with it
before any message crosses (``mcpp.actors.tractor._ipc.authenticate``), and an endpoint serves
only its actor's parent. Results and arguments travel as ``msgspec.Raw`` MessagePack
so the coordinator forwards them without decoding.

Schema evolution: a new field gets a default; the set of tags is pinned by a test, so renaming
a message is a deliberate wire change; :data:`PROTOCOL_VERSION` changes when a change is not
backwards compatible.
"""

from __future__ import annotations

import secrets
from typing import Any, Final, Generic, TypeVar

import msgspec

from mcpp import spill
from mcpp.errors import ProtocolError
from mcpp.workflow.spec import WorkflowSpec

__all__ = [
    "PROTOCOL_VERSION",
    "CancelRun",
    "CancelStep",
    "Decoder",
    "ErrorInfo",
    "Event",
    "EventBatch",
    "Heartbeat",
    "Message",
    "Outcome",
    "ResultBatch",
    "Retiring",
    "RunFinished",
    "RunWorkflow",
    "StartBatch",
    "StartStep",
    "StepCancelled",
    "StepFailed",
    "StepSkipped",
    "StepStarted",
    "StepSucceeded",
    "Versioned",
    "decode_value",
    "encode",
    "encode_result",
    "encode_value",
    "from_step",
    "new_secret",
    "to_coordinator",
    "to_step",
    "to_supervisor",
]

M = TypeVar("M")

PROTOCOL_VERSION: Final = 2  # 2: no secret in messages (channels are authenticated)


class Message(msgspec.Struct, frozen=True, tag_field="kind", kw_only=True):
    """Base of every wire message. Never sent itself."""


class Versioned(Message, frozen=True, kw_only=True):
    """Base of the messages that start work (a run, a step): they carry the protocol version,
    which the receiver checks before anything else."""

    version: int


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A boxed exception: its type name, message and the remote traceback text.

    ``stderr_tail`` holds the last lines (up to 20) the failed attempt wrote to its standard
    error, ``logging`` records at WARNING and above as ``LEVEL: message``, oldest first (see
    :mod:`mcpp.steplog`).
    """

    type: str
    message: str
    traceback: str = ""
    stderr_tail: tuple[str, ...] = ()


# --- supervisor -> coordinator -------------------------------------------------------------


class RunWorkflow(Versioned, frozen=True, tag="run_workflow"):
    """Run ``spec``. ``completed`` maps steps that already succeeded (resume) to their results;
    ``stored`` maps more of them to the file that holds the result (a journal's stored result,
    :mod:`mcpp.supervisor.blobs`), which the coordinator copies into the spill folder without
    reading it (:func:`mcpp.spill.adopt`): a large result of an earlier session never travels
    through the connection or the coordinator's memory.

    ``cache_path`` is the result cache file (``None``: cache nothing); ``identities`` maps each
    step with ``cache`` on to its function hash (:func:`mcpp.cache.step.identities`, computed
    by the supervisor so the coordinator never imports user code). ``log_dir`` is the run's
    absolute logs folder (``None``: step output goes to the actors' standard error) and
    ``log_cap`` the cap of each attempt's log in bytes (``None``: the default, 50 MiB).
    ``attempts_before`` maps steps to the attempts they made in earlier sessions of this run
    (resume): this session numbers their attempts after those, so an attempt number (and its
    log file) names one attempt of the whole run; retry budgets count this session's only.
    ``spill_dir`` is the run's spill folder (:mod:`mcpp.spill`; ``None``: results travel
    inline): large results are files there and travel as references.
    """

    run_id: str
    spec: WorkflowSpec
    completed: dict[str, msgspec.Raw] = {}
    stored: dict[str, str] = {}
    cache_path: str | None = None
    identities: dict[str, str] = {}
    run_dir: str | None = None
    log_dir: str | None = None
    log_cap: int | None = None
    attempts_before: dict[str, int] = {}
    spill_dir: str | None = None


class CancelRun(Message, frozen=True, tag="cancel_run"):
    """Cancel every running step and skip the rest."""

    reason: str = "cancelled"


# --- coordinator -> step ---------------------------------------------------------------------


class StartStep(Versioned, frozen=True, tag="start_step"):
    """Run one attempt of a step: call ``target`` with the MessagePack map ``kwargs``.

    Pool workers only: ``after`` names a step earlier in the worker's queue whose result this
    step takes as the keyword ``after_name`` (default: ``after``); it runs only if that step
    succeeded on this worker, and is dropped without a word otherwise. ``keep`` asks the worker
    to keep this step's result for such a follower. ``log_dir`` and ``log_cap`` are the run's
    (:class:`RunWorkflow`): where the attempt's output is kept, and how much of it.
    ``spill_dir`` is the run's spill folder, where a large result is written (its ``result``
    is then a reference to the file, :mod:`mcpp.spill`).
    """

    run_id: str
    step: str
    attempt: int
    target: str
    kwargs: msgspec.Raw
    import_paths: tuple[str, ...] = ()
    main_path: str | None = None
    after: str | None = None
    after_name: str | None = None
    keep: bool = False
    timeout: float | None = None
    log_dir: str | None = None
    log_cap: int | None = None
    spill_dir: str | None = None


class StartBatch(Message, frozen=True, tag="start_batch"):
    """Several steps for one worker at once (pool mode).

    ``run_dir`` is the run's private folder, where the worker keeps its ledger (which step it
    is running), so the pool can tell after the worker's death which step was running.
    """

    steps: tuple[StartStep, ...]
    run_dir: str | None = None


class CancelStep(Message, frozen=True, tag="cancel_step"):
    """Stop the running attempt of ``step``."""

    step: str


# --- step -> coordinator, and coordinator -> supervisor (events) -----------------------------


class StepStarted(Message, frozen=True, tag="step_started"):
    """An attempt began in process ``pid``."""

    step: str
    attempt: int
    pid: int
    at: float


class StepSucceeded(Message, frozen=True, tag="step_succeeded"):
    """An attempt returned; ``result`` is its MessagePack encoding.

    ``cached`` marks a result taken from the result cache: the step did not run (``attempt``
    and ``duration_s`` are 0). ``ended_processes`` counts processes the step left running
    that mcpp ended after it returned.
    """

    step: str
    attempt: int
    result: msgspec.Raw
    duration_s: float
    cached: bool = False
    ended_processes: int = 0


class StepFailed(Message, frozen=True, tag="step_failed"):
    """An attempt raised, timed out or its process died.

    ``timed_out`` marks a timeout; ``will_retry`` says another attempt follows, after
    ``retry_in_s`` seconds (the backoff drawn for it). ``ended_processes`` counts processes
    of the attempt that mcpp ended when it failed (where the step's actor could count them).
    """

    step: str
    attempt: int
    error: ErrorInfo
    duration_s: float
    timed_out: bool = False
    will_retry: bool = False
    retry_in_s: float | None = None
    ended_processes: int = 0


class Heartbeat(Message, frozen=True, tag="heartbeat"):
    """A liveness signal from a process running ``steps``."""

    pid: int
    at: float
    steps: tuple[str, ...] = ()


class Retiring(Message, frozen=True, tag="retiring"):
    """A pool worker runs no more steps (``reason``): the pool replaces it and gives the
    steps it still held to other workers."""

    pid: int
    reason: str


class ResultBatch(Message, frozen=True, tag="result_batch"):
    """Several step outcomes at once (pool mode)."""

    results: tuple[StepStarted | StepSucceeded | StepFailed | Retiring, ...]


class StepSkipped(Message, frozen=True, tag="step_skipped"):
    """A step will not run because ``because`` (an upstream step) did not succeed."""

    step: str
    because: str | None


class StepCancelled(Message, frozen=True, tag="step_cancelled"):
    """A running step was stopped (fail_fast, interrupt or explicit cancel)."""

    step: str
    attempt: int
    reason: str
    duration_s: float = 0.0


class EventBatch(Message, frozen=True, tag="event_batch"):
    """Several events at once, in order (the coordinator batches what piles up while it sends)."""

    events: tuple[
        StepStarted | StepSucceeded | StepFailed | StepSkipped | StepCancelled | Heartbeat, ...
    ]


class RunFinished(Message, frozen=True, tag="run_finished"):
    """The coordinator is done; ``status`` is succeeded, failed or cancelled."""

    status: str
    duration_s: float


# The messages of each direction, as named unions: a Decoder returns exactly these.
ToCoordinator = RunWorkflow | CancelRun
ToStep = StartStep | StartBatch | CancelStep
FromStep = StepStarted | StepSucceeded | StepFailed | Heartbeat | Retiring | ResultBatch
ToSupervisor = (
    StepStarted
    | StepSucceeded
    | StepFailed
    | StepSkipped
    | StepCancelled
    | RunFinished
    | Heartbeat
    | EventBatch
)

# What a run's events are, once out of their EventBatch: what the supervisor records.
Event = StepStarted | StepSucceeded | StepFailed | StepSkipped | StepCancelled | RunFinished
# How one step attempt ends, as its actor reports it.
Outcome = StepSucceeded | StepFailed

_encoder = msgspec.msgpack.Encoder()


def encode(message: Message) -> bytes:
    """Encode a message to MessagePack bytes."""
    return _encoder.encode(message)


class Decoder(Generic[M]):
    """Decode the messages of one direction; anything else raises :class:`ProtocolError`.

    ``Decoder[Union](Union, direction)`` is built once per direction and reused; its
    :meth:`decode` returns that union, typed.
    """

    __slots__ = ("decoder", "direction")

    def __init__(self, union: Any, direction: str) -> None:
        self.direction = direction
        self.decoder: msgspec.msgpack.Decoder[M] = msgspec.msgpack.Decoder(union)

    def decode(self, data: bytes) -> M:
        """Return the message in ``data``.

        Raises ProtocolError for bytes that are not MessagePack, an unknown or foreign tag, a
        missing field or a field of the wrong type, or a protocol version other than ours.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ProtocolError(
                f"{self.direction}: expected message bytes, got {type(data).__name__}"
            )
        try:
            message = self.decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"{self.direction}: invalid message: {exc}") from None
        if isinstance(message, Versioned) and message.version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"{self.direction}: protocol version {message.version}, expected {PROTOCOL_VERSION}"
            )
        return message


to_coordinator: Final = Decoder[ToCoordinator](ToCoordinator, "supervisor->coordinator")
to_step: Final = Decoder[ToStep](ToStep, "coordinator->step")
from_step: Final = Decoder[FromStep](FromStep, "step->coordinator")
to_supervisor: Final = Decoder[ToSupervisor](ToSupervisor, "coordinator->supervisor")


def new_secret() -> bytes:
    """Return a fresh random run key (256 bits): what every connection of a run proves."""
    return secrets.token_bytes(32)


def encode_value(value: Any, *, step: str) -> msgspec.Raw:
    """Encode a step's result (or arguments) as MessagePack.

    Raises TypeError naming ``step`` and the offending type when ``value`` is not encodable.
    """
    try:
        return msgspec.Raw(_encoder.encode(value))
    except (TypeError, OverflowError) as exc:
        raise TypeError(f"step {step!r}: result cannot be encoded: {exc}") from None


def encode_result(value: Any, *, step: str, spill_dir: str | None) -> msgspec.Raw:
    """Step ``step``'s result encoded (:func:`encode_value`) or, when it is large and the run
    has a ``spill_dir``, a reference to the file holding it (:mod:`mcpp.spill`).

    Raises TypeError naming ``step`` when ``value`` is not encodable or is, as a whole, a
    MessagePack extension value of mcpp's reference type, OSError if the file cannot be written.
    """
    posing = isinstance(value, msgspec.Raw) and spill.is_ref(value)
    if posing or (isinstance(value, msgspec.msgpack.Ext) and value.code == spill.REF_CODE):
        raise TypeError(
            f"step {step!r}: result cannot be encoded: MessagePack extension type "
            f"{spill.REF_CODE} is mcpp's own (a reference to a large result)"
        )
    ref = spill.spill_bytes(value, spill_dir)
    return ref if ref is not None else spill.spill(encode_value(value, step=step), spill_dir)


def decode_value(raw: msgspec.Raw | bytes) -> Any:
    """Decode a value encoded by :func:`encode_value`; a large result that travelled as a
    reference to its file (:mod:`mcpp.spill`) is read from that file.

    Raises ValueError for a reference outside a run's spill folder, OSError for a missing file.
    """
    return spill.decode(raw)
