"""Step logs from outside: ``mcpp spawn`` as a user runs it, then ``mcpp logs`` and the files.

Every test drives the CLI in a subprocess (:mod:`tests.world`: the run's processes counted,
nothing may be left) on steps of ``tests/steps/log_steps.py`` that write output every way a
step can: ``print``, ``os.write(1, ...)``, a subprocess's ``echo``, stderr and ``logging``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mcpp.home import RunIdError
from mcpp.supervisor.logs import LogsError, read_logs
from tests.world import (
    ROOT,
    CliResult,
    World,
    cli_env,
    run_cli,
    start_cli,
    wait_for,
    write_workflow,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the CLI tests run on Linux (/proc, prctl)"
)

STEPS = "tests.steps.log_steps"


def task(id: str, fn: str, module: str = STEPS, **fields: Any) -> dict[str, Any]:
    """A ``[[steps]]`` table running ``module:fn``; ``args`` and step fields in ``fields``."""
    return {"id": id, "run": f"{module}:{fn}", **fields}


def workflow(world: World, mode: str, *steps: dict[str, Any], name: str = "logs") -> Path:
    opts: dict[str, Any] = {"actors": mode}
    if mode == "pool":
        opts["workers"] = 2
    return write_workflow(world.workdir / "wf.toml", list(steps), name=name, **opts)


def mcpp(world: World, *args: str, env: dict[str, str] | None = None) -> CliResult:
    """Run ``python -m mcpp.supervisor ARGS`` to its end (bounded) as a user would."""
    done = subprocess.run(
        [sys.executable, "-m", "mcpp.supervisor", *args],
        cwd=world.cwd,
        env=env or cli_env(world),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return CliResult(code=done.returncode, stdout=done.stdout, stderr=done.stderr)


def run_dir(world: World, result: CliResult) -> Path:
    return world.home / "runs" / result.doc["run_id"]


# --- what a step writes reaches `mcpp logs`, and nothing else -------------------------------


def test_every_kind_of_output_is_in_mcpp_logs_and_none_on_stdout(world: World, mode: str) -> None:
    wf = workflow(world, mode, task("talk", "chatty", args={"tag": "t"}))
    result = run_cli(world, wf)  # spawn --json --no-journal: the logs are written all the same
    assert result.status("talk") == "succeeded", result.stderr
    assert result.doc["steps"]["talk"]["result"] == "done"  # stdout was the document alone
    for text in ("print-t", "oswrite-t", "echo-t", "stderr-t", "warning-t"):
        assert text not in result.stdout + result.stderr, f"{text} reached the terminal"

    shown = mcpp(world, "logs", result.doc["run_id"], "talk")
    assert shown.code == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        "print-t",
        "oswrite-t",
        "echo-t",
        "stderr-t",
        "WARNING: warning-t",
    ]
    lines = json.loads(mcpp(world, "logs", "last", "--json").stdout)
    assert [(line["stream"], line["level"], line["text"]) for line in lines] == [
        ("stdout", None, "print-t"),
        ("stdout", None, "oswrite-t"),
        ("stdout", None, "echo-t"),
        ("stderr", None, "stderr-t"),
        ("log", "WARNING", "warning-t"),
    ]
    assert {(line["step"], line["attempt"]) for line in lines} == {("talk", 1)}


def test_every_step_interleaved_with_its_prefix(world: World, mode: str) -> None:
    wf = workflow(
        world,
        mode,
        task("one", "chatty", args={"tag": "1"}),
        task("second", "chatty", args={"tag": "2"}, depends_on=["one"]),
    )
    result = run_cli(world, wf)
    assert result.statuses() == {"one": "succeeded", "second": "succeeded"}, result.stderr
    shown = mcpp(world, "logs", result.doc["run_id"][:10]).stdout.splitlines()  # a prefix
    assert shown[0] == "one      | print-1"
    assert shown[5] == "second   | print-2"  # 'second' ran after 'one': time order
    assert "second   | WARNING: warning-2" in shown
    assert len(shown) == 10


def test_a_step_modules_import_time_output_stays_off_the_document(world: World, mode: str) -> None:
    wf = workflow(world, mode, task("noisy", "quiet", module="tests.steps.noisy_steps"))
    result = run_cli(world, wf)  # parses stdout as one JSON document, or fails
    assert result.status("noisy") == "succeeded"
    assert "IMPORT-TIME" not in result.stdout
    # The step's process imported the module inside the attempt's capture.
    texts = [line.text for line in read_logs("last", "noisy", home=world.home)]
    assert texts == ["IMPORT-TIME print", "IMPORT-TIME os.write", "IMPORT-TIME stderr"]


def test_spawn_json_is_one_document_when_a_step_prints_5_mib(world: World, mode: str) -> None:
    wf = workflow(world, mode, task("flood", "flood", args={"mib": 5}))
    result = run_cli(world, wf)
    assert json.loads(result.stdout)["steps"]["flood"]["result"] == 5
    assert len(result.stdout) < 10_000 and len(result.stderr) < 10_000
    lines = read_logs("last", "flood", home=world.home)
    assert len(lines) == 5 * (1024 * 1024 // 100)
    assert {line.text for line in lines} == {"y" * 99}


def test_a_log_stops_at_its_cap_with_a_marker(
    world: World, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCPP_LOG_CAP", "64K")
    wf = workflow(world, mode, task("flood", "flood", args={"mib": 2}))
    result = run_cli(world, wf)
    assert result.status("flood") == "succeeded"  # the step ran to its end
    log = run_dir(world, result) / "logs" / "flood" / "1.log"
    data = log.read_bytes()
    assert 60 * 1024 < len(data) <= 64 * 1024 + 200
    last = read_logs("last", "flood", home=world.home, tail=1)[0]
    assert (last.stream, last.level) == ("log", "WARNING")
    assert last.text.startswith("[mcpp] this attempt's log reached its cap of 65536 bytes")


def test_a_bad_log_cap_is_one_clear_error(world: World) -> None:
    wf = workflow(world, "per_step", task("talk", "chatty"))
    done = mcpp(world, "spawn", str(wf), env={**cli_env(world), "MCPP_LOG_CAP": "lots"})
    assert done.code == 2
    assert done.stderr.strip() == (
        "mcpp: MCPP_LOG_CAP='lots': expected a size in bytes such as 1048576 or 50M"
    )
    assert not (world.home / "runs").exists()  # nothing started, nothing journalled
    assert mcpp(world, "status", "--json").stdout.strip() == '{"runs":[]}'


def test_logs_are_private_to_the_user(world: World, mode: str) -> None:
    wf = workflow(world, mode, task("talk", "chatty"))
    result = run_cli(world, wf)
    logs = run_dir(world, result) / "logs"
    folders = [world.home / "runs", logs.parent, logs, logs / "talk"]
    assert [stat.S_IMODE(folder.stat().st_mode) for folder in folders] == [0o700] * 4
    files = [logs / "run.json", logs / "talk" / "1.log"]
    assert [stat.S_IMODE(file.stat().st_mode) for file in files] == [0o600] * 2


# --- failures: the stderr tail in the record, and under the summary --------------------------


def test_a_failed_steps_record_carries_its_last_20_stderr_lines(world: World, mode: str) -> None:
    wf = workflow(world, mode, task("loud", "fail_loud", args={"lines": 30}))
    result = run_cli(world, wf)
    error = result.error("loud")
    assert error["type"] == "RuntimeError"
    assert error["stderr_tail"] == [f"complaint {i}" for i in range(10, 30)]


def test_logging_warnings_and_errors_join_the_stderr_tail(world: World, mode: str) -> None:
    wf = workflow(world, mode, task("loud", "fail_loud", args={"lines": 30, "log": True}))
    tail = run_cli(world, wf).error("loud")["stderr_tail"]
    assert tail == [f"complaint {i}" for i in range(11, 30)] + ["ERROR: loud: logged error"]


def test_a_timed_out_step_gets_its_stderr_tail_from_its_log(world: World, mode: str) -> None:
    wf = workflow(world, mode, task("hang", "hang_loud", args={"lines": 3}, timeout=1.0))
    result = run_cli(world, wf)
    assert result.status("hang") == "timed_out", result.stderr
    assert result.error("hang")["stderr_tail"] == [f"before the hang {i}" for i in range(3)]


def test_the_summary_is_followed_by_each_failures_traceback_and_stderr(world: World) -> None:
    wf = workflow(
        world,
        "per_step",
        task("loud", "fail_loud", args={"lines": 25}),
        task("talk", "chatty"),
    )
    done = mcpp(world, "spawn", str(wf))
    assert done.code == 1
    out = done.stdout
    table = out.index("┏")
    section = out.index("loud: failed (attempt 1)")
    assert table < section
    after = out[section:]
    assert 'raise RuntimeError("it went wrong")' in after
    assert "RuntimeError: it went wrong" in after
    assert "stderr, last 20 lines:" in after
    assert after.index("  complaint 5\n") < after.index("  complaint 24\n")
    assert "  complaint 4\n" not in after
    run_id = read_runs(world)[0]
    assert f"all its output: mcpp logs {run_id} loud" in after
    assert "talk:" not in after  # steps that succeeded get no section
    status = mcpp(world, "status", run_id).stdout  # the journalled run says the same
    assert status[status.index("loud: failed (attempt 1)") :] == after


def read_runs(world: World) -> list[str]:
    return sorted(os.listdir(world.home / "runs"))


# --- spawn --stream ---------------------------------------------------------------------------


def test_stream_mirrors_each_line_after_its_step_id(world: World, mode: str) -> None:
    wf = workflow(world, mode, task("talk", "chatty", args={"tag": "s"}), task("b", "chatty"))
    done = mcpp(world, "spawn", "--no-journal", "--stream", str(wf))
    assert done.code == 0, done.stderr
    lines = done.stdout.splitlines()
    talk = [line for line in lines if line.startswith("talk   | ")]
    assert talk == [
        "talk   | print-s",
        "talk   | oswrite-s",
        "talk   | echo-s",
        "talk   | stderr-s",
        "talk   | WARNING: warning-s",
    ]
    assert "b      | print-x" in lines
    assert lines.index("b      | print-x") < lines.index("b      | echo-x")
    assert not any("print-" in line for line in done.stderr.splitlines())


def test_stream_shows_a_steps_output_before_the_line_that_says_it_ended(
    world: World, mode: str
) -> None:
    wf = workflow(world, mode, task("talk", "chatty", args={"tag": "o"}))
    done = subprocess.run(  # stdout and stderr in one pipe, in the order they were written
        [sys.executable, "-m", "mcpp.supervisor", "spawn", "--no-journal", "--stream", str(wf)],
        cwd=world.cwd,
        env=cli_env(world),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    ended = next(i for i, line in enumerate(lines) if line.startswith("[mcpp] succeeded"))
    assert lines.index("talk   | WARNING: warning-o") < ended, lines


def test_stream_with_json_keeps_stdout_the_document(world: World) -> None:
    wf = workflow(world, "per_step", task("talk", "chatty", args={"tag": "j"}))
    result = run_cli(world, wf, "--stream")
    assert result.status("talk") == "succeeded"
    assert "talk   | print-j" in result.stderr.splitlines()


# --- mcpp logs: follow, run ids, read only ---------------------------------------------------


def test_follow_prints_new_lines_and_returns_when_the_run_ends(world: World, mode: str) -> None:
    go = world.workdir / "go"
    wf = workflow(world, mode, task("wait", "wait_for_go", args={"path": str(go)}))
    run = start_cli(world, wf)

    def first_line() -> bool:
        try:
            return any(line.text == "first" for line in read_logs("last", home=world.home))
        except RunIdError:
            return False

    wait_for(first_line, 60, "the step's first line in its log")
    out = world.workdir / "follow.out"
    with out.open("wb") as stdout:
        follow = world.spawn(
            [sys.executable, "-m", "mcpp.supervisor", "logs", "last", "wait", "--follow"],
            cwd=world.cwd,
            env=cli_env(world),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
        )
    wait_for(lambda: "first" in out.read_text(), 30, "follow printing the first line")
    assert follow.poll() is None  # the run goes on: so does --follow
    go.touch()
    assert follow.wait(timeout=60) == 0
    assert out.read_text().splitlines() == ["first", "second"]
    assert run.finish().status("wait") == "succeeded"


def test_logs_of_an_unknown_run_or_step_say_where_they_looked(world: World) -> None:
    empty = mcpp(world, "logs", "last")
    assert empty.code == 1
    assert empty.stderr.strip() == f"mcpp: there is no run yet (looked in {world.home / 'runs'})"
    assert not (world.home / "runs").exists()  # read-only: it created nothing

    result = run_cli(world, workflow(world, "per_step", task("talk", "chatty")))
    missing = mcpp(world, "logs", "nope")
    assert missing.stderr.strip() == f"mcpp: no run 'nope' (looked in {world.home / 'runs'})"
    step = mcpp(world, "logs", result.doc["run_id"], "other")
    assert step.code == 1
    assert step.stderr.strip() == (
        f"mcpp: run {result.doc['run_id']} has no step 'other' (its steps: talk)"
    )
    with pytest.raises(LogsError):
        read_logs("last", "other", home=world.home)
    none = mcpp(world, "logs", "last", "talk", "--attempt", "2")
    assert (none.code, none.stdout) == (0, "")
    assert "wrote nothing" in none.stderr


# --- the Python API captures the same way ------------------------------------------------------

SCRIPT = """
import mcpp
from tests.steps.log_steps import chatty

wf = mcpp.Workflow("api", actors={mode!r})
wf.add_step("talk", chatty, args={{"tag": "api"}})

if __name__ == "__main__":
    result = wf.run()
    print("STATUS", result.status)
"""


def test_workflow_run_in_python_keeps_step_output_in_the_logs(world: World, mode: str) -> None:
    script = world.workdir / "api_run.py"
    script.write_text(SCRIPT.format(mode=mode))
    env = cli_env(world)
    proc = world.spawn(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out == "STATUS succeeded\n"  # nothing the step wrote
    assert "stderr-api" not in err
    texts = [line.text for line in read_logs("last", "talk", home=world.home)]
    assert texts == ["print-api", "oswrite-api", "echo-api", "stderr-api", "warning-api"]
