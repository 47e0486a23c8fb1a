"""Large results (tests/steps/payload_steps.py), driven through the CLI: a result above the
spill threshold travels as a file in the run's spill folder (mcpp/spill.py), byte for byte,
and nothing of it is left after the run, however the run ends (the ``world`` fixture fails a
test that leaves a ``/dev/shm`` entry or a temporary file)."""

from __future__ import annotations

import base64
import hashlib
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.steps.payload_steps import MIB, pattern
from tests.world import (
    Cli,
    CliResult,
    World,
    read_pids,
    run_cli,
    start_cli,
    start_command,
    wait_for,
    write_workflow,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the run's processes are checked on Linux"
)

STEPS = "tests.steps.payload_steps"


def table(id: str, fn: str, *depends_on: str, **args: Any) -> dict[str, Any]:
    """A ``[[steps]]`` table running ``STEPS:fn``."""
    t: dict[str, Any] = {"id": id, "run": f"{STEPS}:{fn}"}
    if depends_on:
        t["depends_on"] = list(depends_on)
    if args:
        t["args"] = args
    return t


def workflow(world: World, steps: list[dict[str, Any]], mode: str) -> Path:
    opts: dict[str, Any] = {"actors": mode}
    if mode == "pool":
        opts["workers"] = 2
    return write_workflow(world.workdir / "wf.toml", steps, name="payload", **opts)


def shm_spill_folders() -> list[str]:
    """The spill folders of runs alive on this machine (ours and other tests')."""
    return [p.name for p in Path("/dev/shm").glob("mcpp-spill-*")]


@pytest.mark.timeout(180)
def test_a_100_mib_result_round_trips_byte_for_byte(world: World, mode: str) -> None:
    mib = 100
    expected = hashlib.sha256(pattern(mib)).hexdigest()
    wf = workflow(
        world,
        [
            table("make", "make", mib=mib),
            table("relay", "relay", "make"),
            table("check", "digest", "relay"),
        ],
        mode,
    )
    r = run_cli(world, wf, timeout=150)
    assert r.code == 0, f"exit {r.code}; stderr: {r.stderr[-3000:]}"
    assert r.step("check")["result"] == {"sha256": expected, "size": mib * MIB}
    shown = r.step("relay")["result"]  # what the supervisor got back, as the JSON shows bytes
    data = base64.b64decode(shown) if isinstance(shown, str) else bytes(shown)
    assert hashlib.sha256(data).hexdigest() == expected
    world.assert_clean(10)


def test_a_failed_consumer_leaves_no_segment(world: World, mode: str) -> None:
    wf = workflow(world, [table("make", "make", mib=8), table("eat", "fail_on", "make")], mode)
    r = run_cli(world, wf, timeout=60)
    assert r.code == 1, f"exit {r.code}; stderr: {r.stderr[-3000:]}"
    assert r.status("make") == "succeeded"
    assert r.status("eat") == "failed"
    assert r.error("eat")["message"] == "the consumer fails"
    world.assert_clean(10)


@pytest.mark.timeout(90)
def test_sigkill_of_the_supervisor_mid_run_leaves_no_segment(world: World, mode: str) -> None:
    held = world.workdir / "held.pid"
    wf = workflow(
        world,
        [table("make", "make", mib=8), table("held", "hold", "make", pid_file=str(held))],
        mode,
    )
    cli = start_cli(world, wf)
    cli.wait_for_file(held)
    ours = [n for n in shm_spill_folders() if any(Path("/dev/shm", n).iterdir())]
    assert ours, "the large result is not in a spill folder while its consumer runs"
    pids = read_pids(held)
    cli.proc.kill()
    cli.proc.wait(timeout=10)
    world.assert_clean(10, pids=pids)


def finish_sampling(cli: Cli, timeout: float) -> tuple[CliResult, dict[str, int]]:
    """Wait for ``cli`` to end, sampling the peak RSS of the supervisor and the coordinator
    (its child that runs ``mcpp.actors.boot``) while the run lasts."""
    peak = {"supervisor": 0, "coordinator": 0}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                supervisor = psutil.Process(cli.pid)
                peak["supervisor"] = max(peak["supervisor"], supervisor.memory_info().rss)
                for child in supervisor.children():
                    if "coordinat" in " ".join(child.cmdline()):
                        peak["coordinator"] = max(peak["coordinator"], child.memory_info().rss)
            except psutil.Error:  # a process that just exited: the next sample tells
                pass
            done.wait(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        return cli.finish(timeout, parse="--json" in cli.argv), peak
    finally:
        done.set()
        watcher.join()


@pytest.mark.timeout(120)
def test_the_coordinator_does_not_hold_a_large_result(world: World, mode: str) -> None:
    mib = 256
    held = world.workdir / "held.pid"
    wf = workflow(
        world,
        [
            table("make", "make", mib=mib),
            table("relay", "relay", "make"),
            table("held", "hold", "relay", pid_file=str(held), seconds=0.5),
        ],
        mode,
    )
    r, peak = finish_sampling(start_cli(world, wf), 100)
    assert r.code == 0, f"exit {r.code}; stderr: {r.stderr[-3000:]}"
    assert peak["coordinator"] > 0, "the coordinator was never seen"
    assert peak["coordinator"] < mib * MIB // 2, peak
    world.assert_clean(10)


@pytest.mark.timeout(120)
def test_the_summary_shows_a_large_result_without_writing_it_out(world: World, mode: str) -> None:
    mib = 128
    wf = workflow(world, [table("make", "make", mib=mib)], mode)
    r, peak = finish_sampling(start_cli(world, wf, "--quiet", json=False), 100)
    assert r.code == 0, f"exit {r.code}; stderr: {r.stderr[-3000:]}"
    (row,) = [line for line in r.stdout.splitlines() if " make " in line]
    assert "succeeded" in row and "b'" in row and len(row) < 200, row
    # The result mapped and decoded once: about twice its size; its whole repr was 4 times more.
    assert 0 < peak["supervisor"] < 3 * mib * MIB, peak
    world.assert_clean(10)


def test_a_result_that_looks_like_a_reference_is_refused_or_left_alone(
    world: World, mode: str
) -> None:
    victim = "/dev/shm/mcpp-spill-someone-0000/0000"  # another run's spill file, by its name
    wf = workflow(
        world,
        [
            table("top", "lookalike", nested=False, path=victim),
            table("nested", "lookalike", nested=True, path=victim),
            table("look", "describe", "nested"),
        ],
        mode,
    )
    r = run_cli(world, wf, timeout=60)
    assert r.code == 1, f"exit {r.code}; stderr: {r.stderr[-3000:]}"
    assert r.status("top") == "failed"
    assert "extension type 77 is mcpp's own" in r.error("top")["message"]
    assert r.status("look") == "succeeded"
    assert r.step("look")["result"] == [["Ext", 77, victim]]  # handed on, never followed
    shown = base64.b64encode(victim.encode()).decode()
    assert r.step("nested")["result"] == [{"msgpack_ext": 77, "data": shown}]
    summary = start_cli(world, wf, "--quiet", json=False).finish(60, parse=False)
    (row,) = [line for line in summary.stdout.splitlines() if " nested " in line]
    assert "[Ext(77," in row and "object at" not in summary.stdout, summary.stdout  # not an address
    world.assert_clean(10)


@pytest.mark.timeout(90)
def test_a_spill_file_goes_when_the_steps_that_read_it_have_ended(world: World, mode: str) -> None:
    held, go = world.workdir / "held.pid", world.workdir / "go"
    run_id = f"spill-{uuid.uuid4().hex[:12]}"
    wf = workflow(
        world,
        [
            table("make", "make", mib=8),
            table("relay", "relay", "make"),
            table("held", "gate", "relay", pid_file=str(held), go_file=str(go)),
        ],
        mode,
    )
    cli = start_cli(world, wf, "--run-id", run_id)
    cli.wait_for_file(held)
    (folder,) = Path("/dev/shm").glob(f"mcpp-spill-{run_id}-*")
    # make's file goes once relay, its one reader, has ended; relay's stays while held runs.
    wait_for(lambda: len(list(folder.iterdir())) == 1, 10, "make's spill file to go")
    go.touch()
    r = cli.finish(60)
    assert r.code == 0, f"exit {r.code}; stderr: {r.stderr[-3000:]}"
    assert r.step("relay")["result"] == r.step("make")["result"]  # mapped before it went
    assert not folder.exists()
    world.assert_clean(10)


def test_a_retried_reader_still_finds_the_large_result(world: World, mode: str) -> None:
    marker = world.workdir / "tried"
    make, check = table("make", "make", mib=8), table("check", "flaky", "make", marker=str(marker))
    check["retries"] = 1
    r = run_cli(world, workflow(world, [make, check], mode), timeout=60)
    assert r.code == 0, f"exit {r.code}; stderr: {r.stderr[-3000:]}"
    assert r.step("check")["attempts"] == 2
    assert r.step("check")["result"] == {
        "sha256": hashlib.sha256(pattern(8)).hexdigest(),
        "size": 8 * MIB,
    }
    world.assert_clean(10)


@pytest.mark.timeout(180)
def test_a_resumed_run_hands_a_stored_large_result_on_without_the_coordinator(
    world: World, mode: str
) -> None:
    mib, marker = 128, world.workdir / "fixed"
    wf = workflow(
        world,
        [
            table("make", "make", mib=mib),
            table("check", "digest_once_allowed", "make", marker=str(marker)),
        ],
        mode,
    )
    spawn = [sys.executable, "-m", "mcpp.supervisor", "spawn", "--json", str(wf)]
    first = start_command(world, spawn).finish(120)
    assert first.code == 1 and first.status("check") == "failed", first.stderr[-3000:]
    marker.touch()  # the cause is fixed
    resume = [sys.executable, "-m", "mcpp.supervisor", "resume", "--json", first.doc["run_id"]]
    r, peak = finish_sampling(start_command(world, resume), 120)
    assert r.code == 0, f"exit {r.code}; stderr: {r.stderr[-3000:]}"
    assert r.step("make")["attempts"] == 1  # not run again: its stored result was used
    assert r.step("check")["result"] == {
        "sha256": hashlib.sha256(pattern(mib)).hexdigest(),
        "size": mib * MIB,
    }, {k: {f: v for f, v in s.items() if f != "result"} for k, s in r.doc["steps"].items()}
    assert 0 < peak["coordinator"] < mib * MIB // 2, peak
    world.assert_clean(10)
