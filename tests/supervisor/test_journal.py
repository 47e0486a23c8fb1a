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
from mcpp.errors import WorkflowError
from mcpp.protocol import ErrorInfo, StepFailed, StepSkipped, StepStarted, StepSucceeded
from mcpp.supervisor.journal import Journal, JournalError, JournalWriter, RunEnded, journal_path
from mcpp.supervisor.resume import check_compatible, resume
from mcpp.workflow.spec import StepSpec, WorkflowSpec

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


def test_compatible_changes_are_execution_options_only() -> None:
    spec = make_spec(("a", ()), ("b", ("a",)))
    slower = msgspec.structs.replace(
        spec,
        max_concurrent=1,
        steps=tuple(msgspec.structs.replace(s, timeout=9.0, retries=3) for s in spec.steps),
    )
    check_compatible(spec, slower, run_id="r")
    cases: list[tuple[WorkflowSpec, str]] = [
        (make_spec(("a", ()), ("b", ("a",)), ("c", ())), "added: c"),
        (make_spec(("a", ())), "removed: b"),
        (make_spec(("a", ()), ("b", ())), " 'depends_on'"),
        (
            msgspec.structs.replace(
                spec, steps=(msgspec.structs.replace(spec.steps[0], args={"x": 1}), spec.steps[1])
            ),
            "step 'a', field 'args'",
        ),
        (
            msgspec.structs.replace(
                spec, steps=(spec.steps[0], msgspec.structs.replace(spec.steps[1], run="m:g"))
            ),
            "step 'b', field 'run'",
        ),
    ]
    for changed, message in cases:
        with pytest.raises(WorkflowError, match=message):
            check_compatible(spec, changed, run_id="r")


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


def journal_query(home: Path, sql: str) -> list[Any]:
    path = home / "journal.db"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute(sql).fetchall()
    except sqlite3.OperationalError:  # the tables do not exist yet
        return []
    finally:
        db.close()


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
            len(journal_query(home, succeeded_sql)) >= kill_after
            and bool(journal_query(home, "SELECT run_id FROM runs"))
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
    [(run_id,)] = journal_query(home, "SELECT run_id FROM runs")
    done_before = {step for (step,) in journal_query(home, succeeded_sql)}
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


def test_a_failed_run_resumes_after_a_fix_and_an_incompatible_change_is_refused(
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

    write(extra_arg=', note = "v2"')  # a completed step's definition changed
    code, _, err = in_process(home, "resume", run_id, "--json")
    assert code == 2
    assert "step 'a', field 'args'" in err and "start a new run with spawn" in err
    assert executions(logs) == {"a": 2, "b": 2}

    write()
    flag.unlink()
    code, resumed, err = run_cli(home, "resume", run_id, "--json")
    assert code == 0, err
    assert resumed["run_id"] == run_id
    assert {s: r["result"] for s, r in resumed["steps"].items()} == {"a": 1, "b": 2, "c": 3}
    assert executions(logs) == {"a": 2, "b": 3, "c": 1}
    assert status(home, run_id) == (0, resumed)
