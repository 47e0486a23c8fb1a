"""``spawn --events FILE``: every run event as one JSON line, run_id and timestamp added."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import msgspec
import msgspec.json

from mcpp import protocol
from mcpp.cli.events import EventLog, event_document, open_event_hook
from mcpp.supervisor.results import RunRecorder
from mcpp.workflow.spec import StepSpec, WorkflowSpec
from tests.conftest import write_module

CLI = [sys.executable, "-m", "mcpp.supervisor"]
STEPS = """
def one():
    return {"n": 1, "items": [1, 2]}

def boom(one):
    raise ValueError("boom")

def after(boom):
    return 0

def alone():
    return "ok"
"""


def test_event_document_decodes_results_and_adds_run_id_and_ts() -> None:
    event = protocol.StepSucceeded(
        step="a", attempt=1, result=protocol.encode_value({"x": [1]}, step="a"), duration_s=0.5
    )
    doc = event_document("r1", event, ts=12.5)
    assert doc["kind"] == "step_succeeded" and doc["result"] == {"x": [1]}
    assert doc["run_id"] == "r1" and doc["ts"] == 12.5


def test_event_log_writes_one_flushed_line_per_event_and_chains() -> None:
    spec = WorkflowSpec(name="wf", steps=(StepSpec(id="a", run="m:f"),))
    recorder = RunRecorder("r2", spec)
    seen: list[object] = []
    stream = io.BytesIO()
    log = EventLog(stream, then=lambda rec, ev: seen.append(ev))
    event = protocol.StepSkipped(step="a", because=None)
    log.on_event(recorder, event)
    line = stream.getvalue()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["kind"] == "step_skipped"
    assert seen == [event]


def test_open_event_hook_without_a_path_passes_the_hook_through(tmp_path: Path) -> None:
    def hook(recorder: object, event: object) -> None: ...

    with open_event_hook(None, hook) as got:
        assert got is hook


def test_spawn_events_writes_every_event_as_json_lines(tmp_path: Path, no_leftovers: None) -> None:
    mod = write_module(tmp_path, STEPS, "esteps")
    wf = tmp_path / "wf.toml"
    wf.write_text(
        textwrap.dedent(
            f"""
            [workflow]
            name = "events"
            [[steps]]
            id = "one"
            run = "{mod}:one"
            [[steps]]
            id = "boom"
            run = "{mod}:boom"
            depends_on = ["one"]
            [[steps]]
            id = "after"
            run = "{mod}:after"
            depends_on = ["boom"]
            [[steps]]
            id = "alone"
            run = "{mod}:alone"
            """
        )
    )
    events = tmp_path / "events.jsonl"
    env = {**os.environ, "MCPP_HOME": str(tmp_path / "home")}
    began = time.time()
    done = subprocess.run(
        [*CLI, "spawn", str(wf), "--json", "--events", str(events), "--no-journal"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    lines = events.read_bytes().splitlines()
    docs = [json.loads(line) for line in lines]  # every line is one JSON object
    assert docs and all(isinstance(d, dict) for d in docs)
    assert {d["run_id"] for d in docs} == {result["run_id"]}
    stamps = [d["ts"] for d in docs]
    assert stamps == sorted(stamps) and began <= stamps[0] <= stamps[-1] <= time.time()
    kinds = [d["kind"] for d in docs]
    assert kinds[0] == "run_started" and kinds.count("run_started") == 1
    assert docs[0]["workflow"] == "events" and began <= docs[0]["ts"] <= stamps[1]
    assert docs[0]["started_at"].endswith("+00:00")
    assert kinds[-1] == "run_finished" and docs[-1]["status"] == "failed"
    by_step = {(d["kind"], d.get("step")): d for d in docs}
    assert by_step["step_succeeded", "one"]["result"] == {"n": 1, "items": [1, 2]}
    assert by_step["step_succeeded", "alone"]["result"] == "ok"
    failed = by_step["step_failed", "boom"]
    assert failed["error"]["type"] == "ValueError" and failed["error"]["message"] == "boom"
    assert by_step["step_skipped", "after"]["because"] == "boom"
    assert ("step_started", "one") in by_step
    # each line is a protocol event plus run_id and ts (a result is decoded, not MessagePack)
    events_type = (
        protocol.StepStarted
        | protocol.StepFailed
        | protocol.StepSkipped
        | protocol.StepCancelled
        | protocol.RunFinished
        | protocol.Heartbeat
    )
    for doc in docs[1:]:
        body = {k: v for k, v in doc.items() if k not in ("run_id", "ts")}
        if doc["kind"] != "step_succeeded":
            assert (
                msgspec.json.encode(msgspec.convert(body, events_type))
                == json.dumps(body, separators=(",", ":")).encode()
            )


def test_an_unwritable_events_file_is_an_error(tmp_path: Path) -> None:
    from mcpp.errors import RunError

    try:
        with open_event_hook(tmp_path / "no" / "such" / "dir.jsonl"):
            raise AssertionError("opened")
    except RunError as exc:
        assert "cannot write events to" in str(exc)
