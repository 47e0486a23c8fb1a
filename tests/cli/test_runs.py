"""Runs a user manages from the command line: large results, rm and prune, retention, cancel
from another terminal, read-only commands that create nothing, run ids by prefix or ``last``,
private files. Every test drives ``python -m mcpp.supervisor`` in subprocesses and checks the
world after it (tests/world.py, tests/runs_cli.py)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from mcpp.supervisor.journal import Journal
from tests.runs_cli import (
    BIG,
    document,
    env,
    journal_bytes,
    journal_rows,
    mcpp,
    ran,
    steps_module,
    workflow,
)
from tests.world import World, wait_for

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the world harness needs Linux"
)


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
    assert bad.returncode == 2 and "MCPP_KEEP_RUNS='none'" in bad.stderr


def test_runs_without_a_journal_have_folders_that_rm_and_prune_remove(world: World) -> None:
    steps_module(world)
    wf = workflow(world, MEDIUM)
    for _ in range(2):
        assert mcpp(world, "spawn", "--quiet", "--no-journal", str(wf)).returncode == 0
    folders = sorted(p.name for p in (world.home / "runs").iterdir())
    assert len(folders) == 2 and not (world.home / "journal.db").exists()

    done = mcpp(world, "runs", "rm", folders[0][:14])
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (world.home / "runs").iterdir()) == folders[1:]

    assert mcpp(world, "spawn", "--quiet", str(wf)).returncode == 0  # a journalled one too
    done = mcpp(world, "runs", "prune", "--keep", "0", "--json")
    assert done.returncode == 0, done.stderr
    assert folders[1] in document(done)["removed"]
    assert list((world.home / "runs").iterdir()) == []


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
    held = document(mcpp(world, "status", run["run_id"], "--json"))["duration_s"]

    def counting() -> bool:  # a running run's duration is its time so far, not a frozen one
        [now] = document(mcpp(world, "runs", "ls", "--json"))["runs"]
        doc = document(mcpp(world, "status", run["run_id"], "--json"))
        return now["duration_s"] > held + 0.2 and doc["duration_s"] > held + 0.2

    wait_for(counting, 30, "the running run's duration to grow")

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
