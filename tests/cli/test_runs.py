"""Runs a user manages from the command line: resume after a fix, large results, rm and prune,
cancel from another terminal, read-only commands that create nothing, run ids by prefix or
``last``, private files. Every test drives ``python -m mcpp.supervisor`` in subprocesses and
checks the world after it (tests/world.py)."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mcpp.supervisor.journal import Journal
from mcpp.supervisor.replay import RunEnded, decode_record
from tests.world import World, cli_env, wait_for

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the world harness needs Linux"
)

BIG = 50 * 1024 * 1024

STEPS = """
import os, time
from pathlib import Path

HERE = Path(__file__).parent

def count(name):
    with open(HERE / f"ran-{name}", "a") as log:
        log.write(f"{os.getpid()}\\n")

def first(delay=0.0):
    count("first")
    time.sleep(delay)
    return 1

def second(first, ok=False):
    count("second")
    if not ok:
        raise ValueError("not ok yet: set ok = true")
    return first + 1

def third(second, delay=0.0):
    count("third")
    time.sleep(delay)
    return second + 1

def lone():
    count("lone")
    if (HERE / "broken").exists():
        raise RuntimeError("lone is broken")
    return "lone"

def wait_for_go(first):
    count("wait")
    while (HERE / "hold").exists():
        time.sleep(0.02)
    return "went"

def big(size):
    count("big")
    return b"x" * size

def medium(size, tag=0):
    count("medium")
    return "m" * size
"""


def steps_module(world: World, source: str = STEPS) -> Path:
    """Write the step module ``wfsteps`` beside the workflow files (their folder is imported)."""
    path = world.workdir / "wfsteps.py"
    path.write_text(textwrap.dedent(source))
    return path


def workflow(world: World, body: str, name: str = "wf.toml") -> Path:
    path = world.workdir / name
    path.write_text('[workflow]\nname = "runs"\n' + textwrap.dedent(body))
    return path


def env(world: World, **extra: str) -> dict[str, str]:
    environment = cli_env(world)
    environment["PYTHONDONTWRITEBYTECODE"] = "1"  # an edited step module is read afresh
    environment.update(extra)
    return environment


def mcpp(
    world: World, *args: str, timeout: float = 120, **popen: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mcpp.supervisor ARGS`` to its end, as a user would."""
    environment = popen.pop("env", None) or env(world)
    proc = world.spawn(
        [sys.executable, "-m", "mcpp.supervisor", *args],
        cwd=popen.pop("cwd", world.cwd),
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def document(done: subprocess.CompletedProcess[str]) -> Any:
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise AssertionError(f"exit {done.returncode}; stderr: {done.stderr[-3000:]}") from None


def ran(world: World) -> dict[str, int]:
    """How many times each step function ran (one line per execution)."""
    return {
        p.name[len("ran-") :]: len(p.read_text().splitlines()) for p in world.workdir.glob("ran-*")
    }


def journal_rows(home: Path, sql: str) -> list[Any]:
    path = home / "journal.db"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute(sql).fetchall()
    except sqlite3.OperationalError:  # no tables yet
        return []
    finally:
        db.close()


def journal_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in home.glob("journal.db*") if p.name != "journal.db-shm")


# --- resume after a fix --------------------------------------------------------------------

CHAIN = """
[[steps]]
id = "first"
run = "wfsteps:first"
args = {{ delay = 0.3 }}

[[steps]]
id = "second"
run = "wfsteps:second"
depends_on = ["first"]
args = {{ ok = {ok} }}

[[steps]]
id = "third"
run = "wfsteps:third"
depends_on = ["second"]
args = {{ delay = 0.3 }}
"""


def test_resume_after_editing_the_failed_steps_args_reuses_upstream_and_keeps_history(
    world: World,
) -> None:
    steps_module(world)
    wf = workflow(world, CHAIN.format(ok="false"))
    failed = document(mcpp(world, "spawn", "--json", str(wf)))
    assert failed["status"] == "failed"
    assert failed["steps"]["second"]["error"]["message"] == "not ok yet: set ok = true"

    workflow(world, CHAIN.format(ok="true"))  # the fix, in the failed step's args
    done = mcpp(world, "resume", "last", "--json")
    resumed = document(done)
    assert done.returncode == 0, done.stderr
    assert "runs again" not in done.stderr  # nothing that succeeded changed
    assert resumed["run_id"] == failed["run_id"] and resumed["status"] == "succeeded"
    assert {s: r["result"] for s, r in resumed["steps"].items()} == {
        "first": 1,
        "second": 2,
        "third": 3,
    }
    assert ran(world) == {"first": 1, "second": 2, "third": 1}  # first's result was reused

    second = resumed["steps"]["second"]
    assert second["attempts"] == 2
    assert [(h["attempt"], h["session"], h["status"]) for h in second["history"]] == [
        (1, 1, "failed"),
        (2, 2, "succeeded"),
    ]
    assert second["history"][0]["error_type"] == "ValueError"
    assert second["history"][0]["error_message"] == "not ok yet: set ok = true"
    assert resumed["steps"]["first"]["history"] == failed["steps"]["first"]["history"]
    assert len(resumed["resumed_at"]) == 1 and resumed["resumed_at"][0].endswith("+00:00")

    # The run's duration is both sessions': the sum of what each session journalled.
    ended = [
        decode_record(data)
        for (data,) in journal_rows(world.home, "SELECT data FROM events WHERE kind='run_ended'")
    ]
    assert len(ended) == 2 and all(isinstance(e, RunEnded) for e in ended)
    assert ended[0].duration_s == failed["duration_s"]
    assert resumed["duration_s"] == round(sum(e.duration_s for e in ended), 6)
    assert resumed["duration_s"] > failed["duration_s"] + 0.3  # third slept 0.3 s in session 2
    listing = document(mcpp(world, "status", "--json"))["runs"]
    assert listing[0]["duration_s"] == resumed["duration_s"]
    assert document(mcpp(world, "status", failed["run_id"], "--json")) == resumed


EDITABLE = """
[[steps]]
id = "first"
run = "wfsteps:first"

[[steps]]
id = "second"
run = "wfsteps:second"
depends_on = ["first"]
args = { ok = true }

[[steps]]
id = "third"
run = "wfsteps:third"
depends_on = ["second"]

[[steps]]
id = "lone"
run = "wfsteps:lone"
"""


def test_editing_a_succeeded_steps_function_reruns_it_and_its_dependents_and_says_so(
    world: World,
) -> None:
    steps_module(world)
    (world.workdir / "broken").touch()
    wf = workflow(world, EDITABLE)
    failed = document(mcpp(world, "spawn", "--json", str(wf)))
    assert failed["status"] == "failed" and failed["steps"]["lone"]["status"] == "failed"
    assert failed["steps"]["third"]["result"] == 3

    steps_module(world, STEPS.replace("    time.sleep(delay)\n    return 1", "    return 10"))
    (world.workdir / "broken").unlink()
    done = mcpp(world, "resume", failed["run_id"][:8], "--json")
    resumed = document(done)
    assert done.returncode == 0, done.stderr
    assert "step 'first' runs again: its function's code changed (wfsteps:first)" in done.stderr
    assert "step 'second' runs again: upstream step 'first' runs again" in done.stderr
    assert "step 'third' runs again: upstream step 'second' runs again" in done.stderr
    assert "'lone' runs again" not in done.stderr  # it failed: it runs, nothing to say
    reasons = {s: r["rerun_because"] for s, r in resumed["steps"].items()}
    assert reasons == {
        "first": "its function's code changed (wfsteps:first)",
        "second": "upstream step 'first' runs again",
        "third": "upstream step 'second' runs again",
        "lone": None,
    }
    assert {s: r["result"] for s, r in resumed["steps"].items()} == {
        "first": 10,
        "second": 11,
        "third": 12,
        "lone": "lone",
    }
    assert ran(world) == {"first": 2, "second": 2, "third": 2, "lone": 2}

    again = mcpp(world, "resume", "last", "--json")  # succeeded, unchanged: nothing runs
    assert again.returncode == 0 and "runs again" not in again.stderr
    assert document(again) == resumed
    assert ran(world) == {"first": 2, "second": 2, "third": 2, "lone": 2}


# --- large results, rm, prune, retention -----------------------------------------------------


def test_a_50_mib_result_is_a_file_beside_a_small_journal_and_goes_with_its_run(
    world: World,
) -> None:
    steps_module(world)
    wf = workflow(world, f'[[steps]]\nid = "big"\nrun = "wfsteps:big"\nargs = {{ size = {BIG} }}\n')
    done = mcpp(world, "spawn", "--quiet", str(wf))
    assert done.returncode == 0, done.stderr
    [run] = document(mcpp(world, "runs", "ls", "--json"))["runs"]
    run_id = run["run_id"]

    assert journal_bytes(world.home) < 1024 * 1024, list(world.home.iterdir())
    [blob] = list((world.home / "runs" / run_id / "results").iterdir())
    assert blob.stat().st_size >= BIG
    assert stat.S_IMODE(blob.stat().st_mode) == 0o600
    with Journal(world.home / "journal.db") as journal:
        stored = journal.load(run_id)
    assert stored.completed["big"] == msgspec.msgpack.encode(b"x" * BIG)
    assert stored.result.steps["big"].result == b"x" * BIG
    [(digest,)] = journal_rows(world.home, "SELECT blob FROM events WHERE blob IS NOT NULL")
    assert digest == blob.name

    done = mcpp(world, "runs", "rm", run_id[:6])
    assert done.returncode == 0, done.stderr
    assert f"removed {run_id}" in done.stdout
    assert not (world.home / "runs" / run_id).exists()
    assert journal_rows(world.home, "SELECT count(*) FROM events") == [(0,)]
    assert document(mcpp(world, "runs", "ls", "--json"))["runs"] == []


MEDIUM = "".join(
    f'[[steps]]\nid = "m{i}"\nrun = "wfsteps:medium"\nargs = {{ size = 60000 }}\n' for i in range(5)
)


def test_prune_frees_the_space_and_retention_keeps_the_newest_runs(world: World) -> None:
    steps_module(world)
    wf = workflow(world, MEDIUM)
    for _ in range(3):
        assert mcpp(world, "spawn", "--quiet", str(wf)).returncode == 0
    runs = [r["run_id"] for r in document(mcpp(world, "runs", "ls", "--json"))["runs"]]
    assert len(runs) == 3
    before = journal_bytes(world.home)
    assert before > 3 * 5 * 60000  # the results are in the journal (each below the threshold)

    done = mcpp(world, "runs", "prune", "--keep", "1", "--json")
    assert done.returncode == 0, done.stderr
    assert document(done) == {"removed": runs[1:]}
    after = journal_bytes(world.home)
    assert after < before / 2, (before, after)
    assert [r["run_id"] for r in document(mcpp(world, "runs", "ls", "--json"))["runs"]] == runs[:1]

    done = mcpp(world, "runs", "prune", "--older-than", "7d")
    assert done.returncode == 0 and "0 run(s) removed" in done.stdout
    assert mcpp(world, "runs", "prune", "--older-than", "soon").returncode == 2
    assert mcpp(world, "runs", "prune").returncode == 2

    keep2 = env(world, MCPP_KEEP_RUNS="2")
    for _ in range(2):
        assert mcpp(world, "spawn", "--quiet", str(wf), env=keep2).returncode == 0
    listed = [r["run_id"] for r in document(mcpp(world, "runs", "ls", "--json"))["runs"]]
    assert len(listed) == 2 and runs[0] not in listed
    bad = mcpp(world, "spawn", "--quiet", str(wf), env=env(world, MCPP_KEEP_RUNS="none"))
    assert bad.returncode != 0 and "MCPP_KEEP_RUNS='none'" in bad.stderr


# --- cancel from elsewhere -------------------------------------------------------------------

HOLD = """
[[steps]]
id = "first"
run = "wfsteps:first"

[[steps]]
id = "wait"
run = "wfsteps:wait_for_go"
depends_on = ["first"]
"""


def test_cancel_stops_a_run_started_elsewhere_and_resume_finishes_it(world: World) -> None:
    steps_module(world)
    (world.workdir / "hold").touch()
    wf = workflow(world, HOLD)
    out = (world.workdir / "spawn.out").open("w")
    spawn = world.spawn(
        [sys.executable, "-m", "mcpp.supervisor", "spawn", "--json", str(wf)],
        cwd=world.cwd,
        env=env(world),
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    out.close()

    def wait_running() -> bool:
        assert spawn.poll() is None, (world.workdir / "spawn.out").read_text()
        sql = "SELECT 1 FROM events WHERE kind = 'step_started' AND step = 'wait'"
        return bool(journal_rows(world.home, sql))

    wait_for(wait_running, 60, "the step 'wait' to be running")
    [run] = document(mcpp(world, "runs", "ls", "--json"))["runs"]
    assert run["status"] == "running"

    done = mcpp(world, "cancel", run["run_id"][:10])
    assert done.returncode == 0, done.stderr
    assert f"run {run['run_id']} stopped (supervisor pid {spawn.pid}): cancelled" in done.stdout
    assert spawn.wait(timeout=30) == 130
    world.assert_clean(10)  # the supervisor, the coordinator, the step: all gone
    cancelled = document(mcpp(world, "status", "last", "--json"))
    assert cancelled["status"] == "cancelled"
    assert cancelled["steps"]["wait"]["status"] == "cancelled"

    not_running = mcpp(world, "cancel", "last")
    assert not_running.returncode == 1
    assert "is not running (it is cancelled): there is nothing to cancel" in not_running.stderr

    (world.workdir / "hold").unlink()
    done = mcpp(world, "resume", "last", "--json")
    resumed = document(done)
    assert done.returncode == 0, done.stderr
    assert resumed["steps"]["wait"]["result"] == "went"
    assert ran(world) == {"first": 1, "wait": 2}
    assert [h["session"] for h in resumed["steps"]["wait"]["history"]] == [2]


# --- read-only commands, run ids, private files ---------------------------------------------


def test_read_only_commands_in_an_empty_folder_create_nothing_and_say_where_they_looked(
    world: World,
) -> None:
    empty = world.workdir / "empty"
    empty.mkdir()
    environment = env(world)
    environment.pop("MCPP_HOME")
    for args in (["status"], ["runs", "ls"], ["cache", "ls"], ["status", "--json"]):
        done = mcpp(world, *args, cwd=empty, env=environment)
        assert done.returncode == 0, (args, done.stderr)
        assert list(empty.iterdir()) == [], args
    done = mcpp(world, "status", cwd=empty, env=environment)
    assert f"no runs in {empty / '.mcpp'}" in done.stdout and "MCPP_HOME" in done.stdout
    assert document(mcpp(world, "status", "--json", cwd=empty, env=environment)) == {"runs": []}
    for args in (["status", "last"], ["cancel", "last"], ["runs", "rm", "abc"]):
        done = mcpp(world, *args, cwd=empty, env=environment)
        assert done.returncode == 2 and f"no runs in {empty / '.mcpp'}" in done.stderr, args
    assert list(empty.iterdir()) == []


def test_run_ids_by_unique_prefix_or_last(world: World) -> None:
    steps_module(world)
    wf = workflow(world, '[[steps]]\nid = "first"\nrun = "wfsteps:first"\n')
    ids = [document(mcpp(world, "spawn", "--json", str(wf)))["run_id"] for _ in range(2)]
    assert document(mcpp(world, "status", "last", "--json"))["run_id"] == ids[1]
    common = next(i for i, (x, y) in enumerate(zip(*ids, strict=True)) if x != y)
    for run_id in ids:
        unique = run_id[: common + 1]
        assert document(mcpp(world, "status", unique, "--json"))["run_id"] == run_id
    ambiguous = mcpp(world, "status", ids[0][:common])
    assert ambiguous.returncode == 2 and "ambiguous" in ambiguous.stderr
    unknown = mcpp(world, "resume", "zzz")
    assert unknown.returncode == 2 and "no run 'zzz'" in unknown.stderr


def test_mcpp_home_the_journal_the_cache_and_run_folders_are_private(world: World) -> None:
    steps_module(world)
    home = world.workdir / "new" / "home"
    wf = workflow(
        world,
        '[[steps]]\nid = "big"\nrun = "wfsteps:big"\nargs = { size = 100000 }\ncache = true\n',
    )
    done = mcpp(world, "spawn", "--quiet", str(wf), env=env(world, MCPP_HOME=str(home)), umask=0)
    assert done.returncode == 0, done.stderr
    [run_folder] = list((home / "runs").iterdir())

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(world.workdir / "new") == mode(home) == 0o700
    assert mode(home / "runs") == mode(run_folder) == mode(run_folder / "results") == 0o700
    assert mode(next((run_folder / "results").iterdir())) == 0o600
    assert mode(home / "journal.db") == mode(home / "cache.sqlite3") == 0o600
    old = os.umask(0)
    try:
        with Journal(home / "journal.db"):  # open: its -wal and -shm files exist
            for suffix in ("-wal", "-shm"):
                assert mode(home / f"journal.db{suffix}") == 0o600, suffix
    finally:
        os.umask(old)
