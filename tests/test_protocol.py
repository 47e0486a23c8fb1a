"""The wire protocol: tags pinned, strict decoding, the run key."""

from __future__ import annotations

import msgspec
import pytest

from mcpp import protocol
from mcpp.errors import ProtocolError
from mcpp.workflow.spec import StepSpec, WorkflowSpec


def all_message_classes() -> set[type[protocol.Message]]:
    found: set[type[protocol.Message]] = set()
    todo = [protocol.Message]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if not sub.__subclasses__():  # a base (Versioned) is never sent itself
                found.add(sub)
            todo.append(sub)
    return found


def test_the_set_of_tags_is_pinned() -> None:
    # Renaming or adding a message is a wire change: update this set on purpose.
    tags = {cls.__struct_config__.tag: cls.__name__ for cls in all_message_classes()}
    assert tags == {
        "run_workflow": "RunWorkflow",
        "cancel_run": "CancelRun",
        "start_step": "StartStep",
        "start_batch": "StartBatch",
        "cancel_step": "CancelStep",
        "step_started": "StepStarted",
        "step_succeeded": "StepSucceeded",
        "step_failed": "StepFailed",
        "heartbeat": "Heartbeat",
        "result_batch": "ResultBatch",
        "step_skipped": "StepSkipped",
        "step_cancelled": "StepCancelled",
        "event_batch": "EventBatch",
        "run_finished": "RunFinished",
        "retiring": "Retiring",
    }
    assert protocol.PROTOCOL_VERSION == 2


def start(**changes: object) -> protocol.StartStep:
    fields: dict[str, object] = {
        "version": protocol.PROTOCOL_VERSION,
        "run_id": "r1",
        "step": "a",
        "attempt": 1,
        "target": "pkg.mod:fn",
        "kwargs": protocol.encode_value({"x": [1, 2], "y": None}, step="a"),
    }
    fields.update(changes)
    return protocol.StartStep(**fields)  # type: ignore[arg-type]


def test_messages_round_trip_and_raw_values_stay_encoded() -> None:
    decoded = protocol.to_step.decode(protocol.encode(start()))
    assert isinstance(decoded, protocol.StartStep)
    assert isinstance(decoded.kwargs, msgspec.Raw)
    assert protocol.decode_value(decoded.kwargs) == {"x": [1, 2], "y": None}

    spec = WorkflowSpec(name="w", steps=(StepSpec(id="a", run="m:f", timeout=2.5),))
    run = protocol.RunWorkflow(version=protocol.PROTOCOL_VERSION, run_id="r", spec=spec)
    assert protocol.to_coordinator.decode(protocol.encode(run)) == run


def test_batches_carry_their_messages() -> None:
    ok = protocol.StepSucceeded(
        step="a", attempt=1, result=protocol.encode_value(3, step="a"), duration_s=0.1
    )
    batch = protocol.decode_value(protocol.encode(protocol.ResultBatch(results=(ok,))))
    assert batch["results"][0]["kind"] == "step_succeeded"
    events = protocol.to_supervisor.decode(
        protocol.encode(
            protocol.EventBatch(events=(ok, protocol.StepSkipped(step="b", because="a")))
        )
    )
    assert [type(e).__name__ for e in events.events] == ["StepSucceeded", "StepSkipped"]


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",  # never valid MessagePack
        b"not msgpack at all",
        msgspec.msgpack.encode({"kind": "no_such_message"}),
        msgspec.msgpack.encode({"step": "a"}),  # no tag
        msgspec.msgpack.encode({"kind": "cancel_step", "step": 7}),  # wrong type
        msgspec.msgpack.encode({"kind": "cancel_step"}),  # missing field
        msgspec.msgpack.encode([1, 2, 3]),
    ],
)
def test_malformed_bytes_raise_one_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError, match="coordinator->step"):
        protocol.to_step.decode(data)


def test_a_message_of_another_direction_is_refused() -> None:
    heartbeat = protocol.encode(protocol.Heartbeat(pid=1, at=0.0))
    with pytest.raises(ProtocolError, match="heartbeat"):
        protocol.to_step.decode(heartbeat)
    with pytest.raises(ProtocolError):
        protocol.to_coordinator.decode(protocol.encode(start()))


def test_another_protocol_version_is_refused() -> None:
    other = protocol.PROTOCOL_VERSION + 1
    with pytest.raises(ProtocolError, match=f"protocol version {other}"):
        protocol.to_step.decode(protocol.encode(start(version=other)))


def test_non_bytes_are_refused() -> None:
    with pytest.raises(ProtocolError, match="expected message bytes"):
        protocol.to_step.decode({"kind": "start_step"})  # type: ignore[arg-type]


def test_run_keys_are_fresh_and_no_message_carries_one() -> None:
    key = protocol.new_secret()
    assert isinstance(key, bytes) and len(key) == 32 and key != protocol.new_secret()
    fields = {name for cls in all_message_classes() for name in cls.__struct_fields__}
    assert not {name for name in fields if "secret" in name or "key" in name}


def test_an_unencodable_value_names_the_step_and_the_type() -> None:
    with pytest.raises(TypeError, match=r"step 'a'.*object"):
        protocol.encode_value(object(), step="a")
