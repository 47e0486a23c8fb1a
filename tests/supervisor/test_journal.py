"""The run journal, ``status`` and ``resume``: unit tests, then real CLI runs killed and resumed."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import psutil
import pytest
import trio

from mcpp import protocol
from mcpp.cli.main import main as cli_main
from mcpp.protocol import ErrorInfo, StepFailed, StepSkipped, StepStarted, StepSucceeded
from mcpp.supervisor.blobs import BLOB_THRESHOLD
from mcpp.supervisor.changes import plan_resume
from mcpp.supervisor.journal import Journal, JournalError, RunEnded, journal_path
from mcpp.supervisor.manage import parse_age
from mcpp.supervisor.resume import resume
from mcpp.supervisor.writer import JournalWriter
from mcpp.workflow.spec import StepSpec, WorkflowSpec
from tests.runs_cli import journal_rows

ROOT = Path(__file__).resolve().parents[2]
STEPS = "tests.steps.journal_steps"


def make_spec(*steps: tuple[str, tuple[str, ...]]) -> WorkflowSpec:
    return WorkflowSpec(
        name="unit",
        steps=tuple(StepSpec(id=s, run=f"{STEPS}:record", depends_on=d) for s, d in steps),
    )


def ok(step: str, value: Any, attempt: int = 1) -> StepSucceeded:
    raw = protocol.encode_value(value, step=step)
    return StepSucceeded(step=step, attempt=attempt, result=raw, duration_s=0.25)


def now() -> float:
    return time.time()


# --- the journal itself ----------------------------------------------------------------------


def test_journal_path_follows_mcpp_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MCPP_HOME", str(tmp_path))
    assert journal_path() == tmp_path / "journal.db"
    monkeypatch.delenv("MCPP_HOME")
    assert journal_path() == Path(".mcpp") / "journal.db"


def test_events_read_back_as_the_result_document(tmp_path: Path) -> None:
    spec = make_spec(("a", ()), ("b", ("a",)), ("c", ("b",)))
    with Journal(tmp_path / "j.db") as journal:
        journal.begin_run("r1", spec)
        error = ErrorInfo(type="ValueError", message="bad", traceback="tb")
        journal.append(
            "r1",
            [
                (now(), StepStarted(step="a", attempt=1, pid=11, at=1.0)),
                (now(), ok("a", {"rows": [1, 2]})),
                (now(), StepStarted(step="b", attempt=1, pid=12, at=2.0)),
                (now(), StepFailed(step="b", attempt=1, error=error, duration_s=0.5)),
                (now(), StepSkipped(step="c", because="b")),
                (now(), protocol.RunFinished(status="failed", duration_s=1.0)),
                (now(), RunEnded(status="failed", duration_s=1.5)),
            ],
        )
        run = journal.load("r1")
    assert run.spec == spec
    assert run.completed == {"a": msgspec.msgpack.encode({"rows": [1, 2]})}
    doc = run.result
    assert (doc.run_id, doc.workflow, doc.status, doc.duration_s) == ("r1", "unit", "failed", 1.5)
    assert doc.steps["a"].status == "succeeded" and doc.steps["a"].result == {"rows": [1, 2]}
    assert doc.steps["a"].pid == 11 and doc.steps["a"].duration_s == 0.25
    assert doc.steps["b"].status == "failed" and doc.steps["b"].error == error
    assert doc.steps["c"].status == "skipped" and doc.steps["c"].skipped_because == "b"


def test_a_new_session_resets_the_steps_that_did_not_succeed(tmp_path: Path) -> None:
    spec = make_spec(("a", ()), ("b", ("a",)), ("c", ("b",)))
    with Journal(tmp_path / "j.db") as journal:
        journal.begin_run("r1", spec)
        journal.append("r1", [(now(), ok("a", 1)), (now(), StepSkipped(step="c", because="b"))])
        journal.append("r1", [(now(), RunEnded(status="failed", duration_s=1.0))])
        journal.begin_resume("r1", ["a"])
        assert journal.load("r1").result.steps["c"].status == "pending"
        journal.append("r1", [(now(), ok("b", 2)), (now(), ok("c", 3))])
        journal.append("r1", [(now(), RunEnded(status="succeeded", duration_s=2.0))])
        run = journal.load("r1")
    assert run.result.status == "succeeded"
    assert {k: v.result for k, v in run.result.steps.items()} == {"a": 1, "b": 2, "c": 3}
    assert run.result.steps["c"].skipped_because is None
    assert set(run.completed) == {"a", "b", "c"}


def test_runs_are_listed_newest_first_with_their_status(tmp_path: Path) -> None:
    spec = make_spec(("a", ()))
    with Journal(tmp_path / "j.db") as journal:
        journal.begin_run("old", spec)
        journal.append("old", [(now(), RunEnded(status="succeeded", duration_s=0.5))])
        journal.begin_run("new", spec)  # this process is its supervisor, and it is alive
        runs = journal.runs()
        assert [(r.run_id, r.status) for r in runs] == [("new", "running"), ("old", "succeeded")]
        assert runs[1].duration_s == 0.5 and runs[1].started_at.endswith("+00:00")
        with pytest.raises(JournalError, match="still running"):
            journal.begin_resume("new", [])
        with pytest.raises(JournalError, match="no run 'nope'"):
            journal.load("nope")
        with pytest.raises(JournalError, match="no run 'nope'"):
            journal.begin_resume("nope", [])
        with pytest.raises(JournalError, match="cannot journal"):
            journal.begin_run("old", spec)


def test_a_tampered_spec_is_refused(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        journal.begin_run("r1", make_spec(("a", ())))
    other = msgspec.msgpack.encode(make_spec(("b", ())))
    with sqlite3.connect(tmp_path / "j.db") as db:
        db.execute("UPDATE runs SET spec = ?", (other,))
    db.close()
    with Journal(tmp_path / "j.db") as journal, pytest.raises(JournalError, match="hash"):
        journal.load("r1")
    with sqlite3.connect(tmp_path / "j.db") as db:
        db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(JournalError, match="schema 99 is not supported"):
        Journal(tmp_path / "j.db")


async def test_writer_batches_by_count_and_by_time(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        journal.begin_run("r1", make_spec(("a", ())))
        writer = JournalWriter(journal, "r1", interval=0.05, max_events=100)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            for i in range(250):
                writer.record(StepStarted(step="a", attempt=i + 1, pid=1, at=0.0))
            assert writer.written == 0  # nothing is written synchronously
            with trio.fail_after(10):  # the batches leave by count (100) and by time (50 ms)
                while writer.written < 250:  # noqa: ASYNC110 (waits on the writer's thread)
                    await trio.sleep(0.01)
            assert writer.written == 250
            assert writer.batches <= 4
            writer.record(StepStarted(step="a", attempt=251, pid=1, at=0.0))
            writer.record(protocol.Heartbeat(pid=1, at=0.0))
            nursery.cancel_scope.cancel()
        writer.close(RunEnded(status="succeeded", duration_s=0.1))
        run = journal.load("r1")
    assert run.result.status == "succeeded"
    assert run.result.steps["a"].attempts == 251
    with sqlite3.connect(tmp_path / "j.db") as db:
        kinds = dict(db.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall())
    db.close()
    assert kinds == {"run_started": 1, "step_started": 251, "run_ended": 1}


def test_writing_many_events_is_fast(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        journal.begin_run("r1", make_spec(("a", ())))
        writer = JournalWriter(journal, "r1")
        events = [ok("a", i) for i in range(40_000)]
        began = time.perf_counter()
        for event in events:
            writer.record(event)
        recorded = time.perf_counter() - began
        writer.close()
        written = time.perf_counter() - began
    # About 1 us per event to record and 7 us to write here; the bounds leave room for load.
    assert recorded < 1.0, f"recording 40k events took {recorded:.3f} s"
    assert written < 10.0, f"writing 40k events took {written:.3f} s"


CRASHER = textwrap.dedent(
    """
    import sys, time
    from mcpp.supervisor.journal import Journal
    from mcpp.protocol import StepStarted
    from mcpp.workflow.spec import StepSpec, WorkflowSpec
    spec = WorkflowSpec(name="crash", steps=(StepSpec(id="a", run="m:f"),))
    journal = Journal(sys.argv[1])
    journal.begin_run(sys.argv[2], spec)
    print("ready", flush=True)
    while True:
        journal.append(sys.argv[2], [(time.time(), StepStarted(step="a", attempt=i, pid=1, at=0.0))
                                     for i in range(50)])
    """
)


def test_a_writer_killed_at_random_points_leaves_a_consistent_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    rng = random.Random(5)
    for n in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", CRASHER, str(path), f"run{n}"], cwd=ROOT, stdout=subprocess.PIPE
        )
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.0, 0.3))
        proc.kill()
        proc.communicate()
    with Journal(path) as journal:
        assert journal.db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        runs = journal.runs()
        assert sorted(r.run_id for r in runs) == [f"run{n}" for n in range(4)]
        assert {r.status for r in runs} == {"interrupted"}
        for run_id in (r.run_id for r in runs):
            count = journal.db.execute(
                "SELECT count(*) FROM events WHERE run_id = ? AND kind = 'step_started'", (run_id,)
            ).fetchone()[0]
            assert count % 50 == 0  # every batch whole or absent
            assert journal.load(run_id).result.status == "interrupted"


# --- compatibility -----------------------------------------------------------------------------


def test_a_resume_reuses_only_unchanged_succeeded_steps_with_unchanged_upstream() -> None:
    spec = make_spec(("a", ()), ("b", ("a",)), ("c", ("b",)), ("d", ()))
    hashes = {s.id: f"h-{s.id}" for s in spec.steps}
    done = {"a", "b", "c", "d"}
    same = plan_resume(spec, spec, done, hashes, hashes)
    assert (same.reused, same.rerun, same.notices()) == (["a", "b", "c", "d"], {}, [])
    slower = msgspec.structs.replace(
        spec,
        max_concurrent=1,
        steps=tuple(msgspec.structs.replace(s, timeout=9.0, retries=3) for s in spec.steps),
    )
    assert plan_resume(spec, slower, done, hashes, hashes).rerun == {}  # options are free
    failed = {"a", "d"}  # b failed, c was skipped: they run, whatever changed in them
    b_fixed = msgspec.structs.replace(spec.steps[1], args={"fixed": True}, run="m:g")
    fixed = msgspec.structs.replace(spec, steps=(spec.steps[0], b_fixed, *spec.steps[2:]))
    plan = plan_resume(spec, fixed, failed, hashes, hashes)
    assert (plan.reused, plan.rerun) == (["a", "d"], {})
    a_args = msgspec.structs.replace(spec.steps[0], args={"x": 1})
    edited = msgspec.structs.replace(spec, steps=(a_args, *spec.steps[1:]))
    plan = plan_resume(spec, edited, done, hashes, hashes)
    assert plan.reused == ["d"]
    assert plan.rerun == {
        "a": "its definition changed (args)",
        "b": "upstream step 'a' runs again",
        "c": "upstream step 'b' runs again",
    }
    plan = plan_resume(spec, spec, done, hashes, {**hashes, "b": "new"})
    assert plan.reused == ["a", "d"] and plan.rerun["b"].startswith("its function's code changed")
    assert plan.notices()[0].startswith("step 'b' runs again: its function's code changed")
    plan = plan_resume(spec, spec, done, {}, hashes)  # a journal without function hashes
    assert plan.reused == [] and "no record" in plan.rerun["a"]
    # Shape: d removed (dropped), e added (runs), c now also after e (runs again).
    reshaped = make_spec(("a", ()), ("b", ("a",)), ("e", ()), ("c", ("b", "e")))
    plan = plan_resume(spec, reshaped, done, hashes, {**hashes, "e": "h-e"})
    assert (plan.reused, plan.added, plan.dropped) == (["a", "b"], ["e"], ["d"])
    assert plan.rerun == {"c": "its definition changed (depends_on)"}
    assert "step 'd' was removed from the workflow: its result is dropped" in plan.notices()


# --- real runs through the CLI -------------------------------------------------------------------


def write_workflow(
    path: Path,
    steps: list[tuple[str, tuple[str, ...]]],
    *,
    log_dir: Path,
    delay: float = 0.0,
    max_concurrent: int = 2,
    run: Callable[[str], str] = lambda step: "record",
    extra: Callable[[str], str] = lambda step: "",
) -> None:
    lines = [f'[workflow]\nname = "durable"\nmax_concurrent = {max_concurrent}\n']
    for step, deps in steps:
        args = f'name = "{step}", log_dir = "{log_dir}"'
        args += f", delay = {delay}" if run(step) == "record" else ""
        lines.append(
            f'[[steps]]\nid = "{step}"\nrun = "{STEPS}:{run(step)}"\n'
            f"depends_on = {json.dumps(list(deps))}\nargs = {{ {args}{extra(step)} }}\n"
        )
    path.write_text("\n".join(lines))


def cli(home: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MCPP_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-m", "mcpp.supervisor", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def run_cli(home: Path, *args: str) -> tuple[int, Any, str]:
    """Run a command to the end: exit code, its JSON output (or None), its stderr."""
    proc = cli(home, *args)
    out, err = proc.communicate(timeout=60)
    doc = json.loads(out) if out.strip().startswith(b"{") else None
    return proc.returncode, doc, err.decode()


def in_process(home: Path, *args: str) -> tuple[int, Any, str]:
    """Run a command that starts no actor in this process: exit code, JSON output, stderr."""
    out, err = io.TextIOWrapper(io.BytesIO()), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MCPP_HOME", str(home))
        patch.setattr(sys, "stdout", out)
        patch.setattr(sys, "stderr", err)
        code = cli_main(list(args))
    out.flush()
    text = out.detach().getvalue()
    return code, json.loads(text) if text.strip() else None, err.getvalue()


def status(home: Path, *args: str) -> tuple[int, Any]:
    """``status [RUN_ID] --json``, in this process: exit code and document."""
    code, doc, _ = in_process(home, "status", *args, "--json")
    return code, doc


def executions(log_dir: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().splitlines()) for p in log_dir.iterdir()}


def processes_of(home: Path) -> list[psutil.Process]:
    """Living processes (this user's) whose environment names ``home`` as MCPP_HOME."""
    found = []
    for proc in psutil.process_iter():
        try:
            if (
                proc.environ().get("MCPP_HOME") == str(home)
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(proc)
        except psutil.Error:
            pass
    return found


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# a first; b and c after a; d after b and c
DAG = [("a", ()), ("b", ("a",)), ("c", ("a",)), ("d", ("b", "c"))]
EXPECTED = {"a": 1, "b": 2, "c": 2, "d": 5}


# Kill before any step succeeded, and after some did (plus a random delay shorter than a step,
# so the run is never over before the kill: a step may be running,
# or its success may still sit in the writer's buffer). The crash test above adds random points.
@pytest.mark.parametrize("kill_after", [0, 2])
def test_a_killed_supervisor_leaves_no_process_and_resume_runs_only_the_rest(
    tmp_path: Path, kill_after: int, no_leftovers: None
) -> None:
    home, logs = tmp_path / "home", tmp_path / "logs"
    logs.mkdir()
    workflow = tmp_path / "durable.toml"
    write_workflow(workflow, DAG, log_dir=logs, delay=1.0)
    supervisor = cli(home, "spawn", str(workflow), "--json")
    succeeded_sql = "SELECT step FROM events WHERE kind = 'step_succeeded'"
    wait_for(
        lambda: (
            len(journal_rows(home, succeeded_sql)) >= kill_after
            and bool(journal_rows(home, "SELECT run_id FROM runs"))
        ),
        30,
        f"{kill_after} steps to succeed",
    )
    time.sleep(random.uniform(0.0, 0.3))
    tree = [psutil.Process(supervisor.pid), *psutil.Process(supervisor.pid).children(True)]
    supervisor.send_signal(signal.SIGKILL)
    supervisor.communicate()
    _, alive = psutil.wait_procs(tree, timeout=5)
    assert not alive, f"still alive after the supervisor's death: {alive}"
    wait_for(lambda: not processes_of(home), 5, "every process of the run to exit")

    # The journal opens, and lists the run as interrupted.
    with Journal(home / "journal.db") as journal:
        assert journal.db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    [(run_id,)] = journal_rows(home, "SELECT run_id FROM runs")
    done_before = {step for (step,) in journal_rows(home, succeeded_sql)}
    counts_before = executions(logs)
    code, listing = status(home)
    assert code == 0 and [(r["run_id"], r["status"]) for r in listing["runs"]] == [
        (run_id, "interrupted")
    ]
    code, doc = status(home, run_id)
    assert code == 0 and doc["status"] == "interrupted" and doc["run_id"] == run_id

    code, doc, err = run_cli(home, "resume", run_id, "--json")
    assert code == 0, err
    assert doc["run_id"] == run_id and doc["status"] == "succeeded"
    assert {k: (v["status"], v["result"]) for k, v in doc["steps"].items()} == {
        k: ("succeeded", v) for k, v in EXPECTED.items()
    }
    counts_after = executions(logs)
    for step in done_before:
        assert counts_after[step] == counts_before[step] == 1, step
    assert set(counts_after) == set(EXPECTED)
    assert status(home, run_id) == (0, doc)


def test_status_shows_a_finished_run_as_spawn_printed_it_and_resume_is_a_no_op(
    tmp_path: Path, no_leftovers: None
) -> None:
    home, logs = tmp_path / "home", tmp_path / "logs"
    logs.mkdir()
    workflow = tmp_path / "small.toml"
    write_workflow(workflow, [("a", ()), ("b", ("a",))], log_dir=logs)
    code, spawned, err = run_cli(home, "spawn", str(workflow), "--json")
    assert code == 0, err
    run_id = spawned["run_id"]
    code, listing, _ = run_cli(home, "status", "--json")
    [entry] = listing["runs"]
    assert entry["run_id"] == run_id and entry["workflow"] == "durable"
    assert entry["status"] == "succeeded" and entry["duration_s"] == spawned["duration_s"]
    assert run_cli(home, "status", run_id, "--json")[1] == spawned
    code, resumed, _ = run_cli(home, "resume", run_id, "--json")
    assert code == 0 and resumed == spawned
    assert json.loads(resume(run_id, home=home).to_json()) == spawned  # the Python API
    assert executions(logs) == {"a": 1, "b": 1}
    code, _, err = in_process(home, "status", "no-such-run")
    assert code == 2 and "no run 'no-such-run'" in err
    code, _, err = in_process(home, "resume", "no-such-run")
    assert code == 2 and "no run 'no-such-run'" in err


def test_a_failed_run_resumes_after_a_fix_and_a_changed_succeeded_step_runs_again(
    tmp_path: Path, no_leftovers: None
) -> None:
    home, logs = tmp_path / "home", tmp_path / "logs"
    logs.mkdir()
    flag = tmp_path / "broken"
    flag.touch()
    workflow = tmp_path / "flaky.toml"
    steps: list[tuple[str, tuple[str, ...]]] = [("a", ()), ("b", ("a",)), ("c", ("b",))]

    def write(extra_arg: str = "") -> None:
        write_workflow(
            workflow,
            steps,
            log_dir=logs,
            run=lambda s: "fail_if" if s == "b" else "record",
            extra=lambda s: f', flag = "{flag}"' if s == "b" else extra_arg if s == "a" else "",
        )

    write()
    unjournalled = cli(tmp_path / "other", "spawn", str(workflow), "--json", "--no-journal")
    code, failed, _ = run_cli(home, "spawn", str(workflow), "--json")
    assert code == 1
    unjournalled.communicate(timeout=60)
    assert unjournalled.returncode == 1
    # --no-journal: no journal; the run's step logs are kept all the same.
    assert os.listdir(tmp_path / "other") == ["runs"]
    assert [failed["steps"][s]["status"] for s in "abc"] == ["succeeded", "failed", "skipped"]
    run_id = failed["run_id"]
    listing = status(home)[1]["runs"]
    assert [(r["run_id"], r["status"]) for r in listing] == [(run_id, "failed")]

    write(extra_arg=', note = "v2"')  # a succeeded step's definition changed: it runs again
    code, again, err = run_cli(home, "resume", run_id, "--json")
    assert code == 1
    assert "step 'a' runs again: its definition changed (args)" in err
    assert again["steps"]["a"]["rerun_because"] == "its definition changed (args)"
    assert executions(logs) == {"a": 3, "b": 3}, json.dumps(again, indent=1)

    flag.unlink()  # the fix; a is unchanged since the last resume: it is reused
    code, resumed, err = run_cli(home, "resume", run_id[:10], "--json")  # a unique prefix
    assert code == 0, err
    assert "runs again" not in err
    assert resumed["run_id"] == run_id
    assert {s: r["result"] for s, r in resumed["steps"].items()} == {"a": 1, "b": 2, "c": 3}
    assert executions(logs) == {"a": 3, "b": 4, "c": 1}
    assert len(resumed["resumed_at"]) == 2
    assert status(home, run_id) == (0, resumed)


# --- large results, read-only opening, the older schema ---------------------------------------


def test_a_large_result_is_a_verified_file_and_a_small_one_stays_in_its_row(
    tmp_path: Path,
) -> None:
    spec = make_spec(("a", ()), ("b", ()))
    large = b"y" * (BLOB_THRESHOLD + 1)
    with Journal(tmp_path / "j.db") as journal:
        journal.begin_run("r1", spec)
        journal.append("r1", [(now(), ok("a", large)), (now(), ok("b", b"small"))])
        assert journal.load("r1").completed["a"] == msgspec.msgpack.encode(large)
    [blob] = list((tmp_path / "runs" / "r1" / "results").iterdir())
    with sqlite3.connect(tmp_path / "j.db") as db:
        rows = db.execute("SELECT step, blob, length(data) FROM events WHERE blob IS NOT NULL")
        [(step, digest, size)] = rows.fetchall()
    db.close()
    assert (step, digest) == ("a", blob.name) and size < 200
    blob.write_bytes(blob.read_bytes()[:-1] + b"z")
    with Journal(tmp_path / "j.db") as journal:
        with pytest.raises(JournalError, match="does not match its hash"):
            journal.load("r1")
        blob.unlink()
        with pytest.raises(JournalError, match="cannot be read"):
            journal.load("r1")
        with pytest.raises(JournalError, match="r1 is still running: stop it first"):
            journal.delete(["r1"])  # this process is its supervisor
        journal.append("r1", [(now(), RunEnded(status="failed", duration_s=1.0))])
        assert journal.delete(["r1"]) == ["r1"]
    assert not (tmp_path / "runs" / "r1").exists()


def test_a_read_only_journal_creates_nothing_and_refuses_writes(tmp_path: Path) -> None:
    assert Journal.open_readonly(tmp_path / "home") is None
    assert not (tmp_path / "home").exists()
    with Journal.open(tmp_path / "home") as journal:
        journal.begin_run("r1", make_spec(("a", ())))
    reader = Journal.open_readonly(tmp_path / "home")
    assert reader is not None
    with reader, pytest.raises(sqlite3.OperationalError, match="readonly"):
        assert [r.run_id for r in reader.runs()] == ["r1"]
        assert not hasattr(reader, "append")
        reader.db.execute("DELETE FROM runs")


def test_a_journal_of_the_first_schema_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    with Journal(path) as journal:
        journal.begin_run("r1", make_spec(("a", ())))
        journal.append("r1", [(now(), ok("a", 1))])
    with sqlite3.connect(path) as db:  # back to version 1: no blob column
        db.execute("ALTER TABLE events DROP COLUMN blob")
        db.execute("PRAGMA user_version = 1")
    db.close()
    reader = Journal.open_readonly(path.parent)
    assert reader is not None
    with reader:
        assert reader.load("r1").completed == {"a": msgspec.msgpack.encode(1)}
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (2,)
    db.close()


def test_prune_by_age_and_by_count_skips_running_runs(tmp_path: Path) -> None:
    spec = make_spec(("a", ()))
    with Journal(tmp_path / "j.db") as journal:
        for run_id in ("r1", "r2", "r3"):
            journal.begin_run(run_id, spec)
            if run_id != "r3":  # r3's supervisor (this process) still runs it
                journal.append(run_id, [(now(), RunEnded(status="succeeded", duration_s=0.1))])
        assert journal.prune(older_than=3600) == []
        assert journal.prune(keep=2) == ["r1"]
        assert journal.prune(older_than=60, now=time.time() + 120) == ["r2"]
        assert [r for r, _ in journal.run_ids()] == ["r3"]
    assert parse_age("7d") == 7 * 86400 and parse_age("90") == 90.0 and parse_age("1.5h") == 5400
    with pytest.raises(ValueError, match="cannot read the age"):
        parse_age("a week")


async def test_a_batch_taken_as_the_writer_is_cancelled_is_still_written(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as journal:
        journal.begin_run("r1", make_spec(("a", ())))
        for attempt in range(1, 21):  # the cancel lands at a different point each time
            writer = JournalWriter(journal, "r1")
            writer.record(StepStarted(step="a", attempt=attempt, pid=1, at=0.0))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer.pending.send_now)
                for _ in range(attempt % 3):
                    await trio.lowlevel.checkpoint()  # let it take the batch, then cancel
                nursery.cancel_scope.cancel()  # as the end of a run cancels the writer
            writer.close()
        run = journal.load("r1")
    assert run.result.steps["a"].attempts == 20  # no batch was lost
    with sqlite3.connect(tmp_path / "j.db") as db:
        (count,) = db.execute("SELECT count(*) FROM events WHERE kind = 'step_started'").fetchone()
    db.close()
    assert count == 20
