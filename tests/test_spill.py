"""The hand-over of a large result without processes (mcpp/spill.py): what the producer
writes, what the supervisor maps, what a pool worker keeps for a follower, and when the
supervisor decodes it. The same paths through real runs: tests/test_payload.py."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from mcpp import protocol, spill
from mcpp.actors.root import ended_for_good
from mcpp.actors.runner import Kept
from mcpp.protocol import ErrorInfo, StepFailed, StepSkipped, StepStarted, StepSucceeded
from mcpp.supervisor.results import LAZY_DECODE, RunRecorder
from mcpp.workflow.spec import StepSpec, WorkflowSpec
from tests.steps.payload_steps import pattern


@pytest.fixture
def spill_folder() -> Iterator[str]:
    """A spill folder of a run of its own, removed after the test."""
    folder = spill.folder_for("test")
    os.mkdir(folder, 0o700)
    yield folder
    shutil.rmtree(folder)


@pytest.mark.parametrize("kind", [bytes, bytearray])
def test_a_large_bytes_result_is_written_as_its_encoding(spill_folder: str, kind: type) -> None:
    value = kind(pattern(2))
    ref = protocol.encode_result(value, step="make", spill_dir=spill_folder)
    assert spill.is_ref(ref)
    assert spill.read(ref) == msgspec.msgpack.encode(value)
    assert spill.decode(ref) == bytes(value)
    small = protocol.encode_result(b"x" * 10, step="make", spill_dir=spill_folder)
    assert not spill.is_ref(small) and spill.decode(small) == b"x" * 10


def test_an_unencodable_result_names_its_step(spill_folder: str) -> None:
    with pytest.raises(TypeError, match="step 'make'"):
        protocol.encode_result(object(), step="make", spill_dir=spill_folder)


def test_the_supervisor_maps_a_spilled_result_and_the_mapping_outlives_the_file(
    spill_folder: str,
) -> None:
    value = pattern(3)
    ref = protocol.encode_result(value, step="make", spill_dir=spill_folder)
    mapped = spill.materialize(ref)
    (path,) = Path(spill_folder).iterdir()
    os.unlink(path)  # as the run's end removes the folder before the document is made
    assert msgspec.msgpack.decode(mapped) == value
    assert spill.materialize(msgspec.Raw(b"\x01")) == msgspec.Raw(b"\x01")


def test_a_kept_str_or_bytes_is_handed_on_as_is_and_anything_else_decoded_afresh() -> None:
    for value in ("text", b"bytes", pattern(2)):
        assert Kept(value, msgspec.Raw(msgspec.msgpack.encode(value))).value() is value
    listed = [1, (2, 3)]
    kept = Kept(listed, msgspec.Raw(msgspec.msgpack.encode(listed)))
    listed.append(4)  # the upstream's later change is not the follower's
    got = kept.value()
    assert got == [1, [2, 3]] and got is not kept.value()


def test_a_large_result_is_decoded_when_the_document_is_made() -> None:
    spec = WorkflowSpec(
        name="w", steps=[StepSpec(id="big", run="m:f"), StepSpec(id="s", run="m:f")]
    )
    recorder = RunRecorder("r", spec)
    big = b"\x00" * LAZY_DECODE
    for step, value in (("big", big), ("s", "small")):
        raw = msgspec.Raw(msgspec.msgpack.encode(value))
        recorder.apply(StepSucceeded(step=step, attempt=1, result=raw, duration_s=0.1))
    assert recorder.steps["s"].result == "small"
    assert recorder.steps["big"].result is None  # not decoded on the event loop
    document = recorder.result()
    assert document.steps["big"].result == big
    assert bytes(recorder.raw_results["big"]) == msgspec.msgpack.encode(big)


def test_only_a_whole_value_is_a_reference_and_a_result_cannot_pose_as_one() -> None:
    ext = msgspec.msgpack.Ext(spill.REF_CODE, b"/dev/shm/mcpp-spill-x-0/0")
    assert spill.decode(msgspec.msgpack.encode([ext])) == [ext]
    assert spill.decode_arguments(msgspec.msgpack.encode({"up": [ext]})) == {"up": [ext]}
    for value in (ext, msgspec.Raw(msgspec.msgpack.encode(ext))):
        with pytest.raises(TypeError, match=r"step 'x'.*extension type 77 is mcpp's own"):
            protocol.encode_result(value, step="x", spill_dir=None)


def test_a_spill_file_goes_once_mapped_and_every_reader_has_ended(spill_folder: str) -> None:
    releaser = spill.Releaser({"make": (), "b": ("make",), "c": ("make",), "lone": ()})
    refs = {
        step: protocol.encode_result(pattern(1), step=step, spill_dir=spill_folder)
        for step in ("make", "lone")
    }

    def left() -> int:
        return len(list(Path(spill_folder).iterdir()))

    releaser.mapped("lone", refs["lone"])  # nothing reads it: it goes at once
    assert left() == 1
    releaser.finished("b")  # a reader done before the supervisor mapped the result
    releaser.mapped("make", refs["make"])
    releaser.finished("b")  # counted once
    assert left() == 1
    releaser.finished("c")
    assert left() == 0


def test_only_a_final_outcome_ends_a_step_for_good() -> None:
    error = ErrorInfo(type="E", message="m")
    retry = StepFailed(step="a", attempt=1, error=error, duration_s=0, will_retry=True)
    assert ended_for_good(retry) is None
    assert ended_for_good(msgspec.structs.replace(retry, will_retry=False)) == "a"
    assert ended_for_good(StepSkipped(step="s", because="x failed")) == "s"
    assert ended_for_good(StepStarted(step="a", attempt=1, pid=1, at=0.0)) is None
