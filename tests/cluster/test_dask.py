"""Dask mode driven through the CLI against a real Dask cluster on 127.0.0.1.

One cluster for the module: a ``dask scheduler`` and two ``dask worker --nthreads 1``
processes (each a nanny and its worker process) started from the project's venv on free
ports. Every test runs ``mcpp spawn`` as a user would and checks the world after it: no
process left but the cluster's own (scheduler, nannies, worker processes), which the module
stops at the end, proving none of them is left either.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.world import (
    ROOT,
    CliResult,
    World,
    cli_env,
    gone,
    run_cli,
    start_cli,
    wait_for,
    wait_for_file,
    write_workflow,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="dask mode's containment needs Linux"
)

STEPS = "tests.steps.dask_steps"
SCHEDULER = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]
WORKER_OPTIONS = ["--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"]
READY_TIMEOUT = 90.0  # a busy 2-core machine takes several seconds to start a worker


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    nannies: list[subprocess.Popen[bytes]]

    def worker_processes(self) -> set[int]:
        """The Dask worker processes (each nanny's children)."""
        pids: set[int] = set()
        for nanny in self.nannies:
            with contextlib.suppress(psutil.Error):
                pids.update(c.pid for c in psutil.Process(nanny.pid).children())
        return pids

    def members(self) -> set[int]:
        return {self.scheduler.pid, *(n.pid for n in self.nannies), *self.worker_processes()}

    def wait_ready(self, workers: int = 2) -> None:
        """Wait until ``workers`` workers are registered with the scheduler."""
        from distributed import Client

        with Client(self.address, timeout=READY_TIMEOUT, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=READY_TIMEOUT)


def start_cluster(folder: Path, env: dict[str, str]) -> Cluster:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    with (folder / "scheduler.log").open("wb") as log:
        scheduler = subprocess.Popen(
            [*SCHEDULER, "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=folder,
        )
    nannies = []
    for i in range(2):
        with (folder / f"worker{i}.log").open("wb") as log:
            nannies.append(
                subprocess.Popen(
                    [*WORKER, address, *WORKER_OPTIONS, "--name", f"w{i}"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=folder,
                )
            )
    return Cluster(address, scheduler, nannies)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("dask")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH", "")] if p)
    env.pop("MCPP_DASK_SCHEDULER", None)
    found = start_cluster(folder, env)
    try:
        found.wait_ready()
        yield found
    finally:
        everything = found.members()
        for proc in [*found.nannies, found.scheduler]:
            proc.terminate()
        for proc in [*found.nannies, found.scheduler]:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        left = wait_for_gone(everything)
        for pid in left:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        assert not left, f"the cluster left processes: {left}"


def wait_for_gone(pids: set[int], timeout: float = 30.0) -> list[int]:
    with contextlib.suppress(AssertionError):
        wait_for(lambda: all(gone(p) for p in pids), timeout, "the cluster's processes")
    return [p for p in pids if not gone(p)]


class ClusterWorld(World):
    """A World whose descendants leave out the cluster's own processes (only those: an
    attempt process below a Dask worker, or anything it started, still counts), and whose
    ``/dev/shm`` check leaves out multiprocessing's semaphores (``sem.mp-*``): a nanny makes
    them when it restarts a killed worker; mcpp uses no multiprocessing."""

    cluster: Cluster

    def descendants(self) -> list[psutil.Process]:
        members = self.cluster.members()
        return [p for p in super().descendants() if p.pid not in members]

    def new_shm(self) -> list[str]:
        return [name for name in super().new_shm() if not Path(name).name.startswith("sem.mp-")]


@pytest.fixture
def world(tmp_path: Path, cluster: Cluster) -> Iterator[ClusterWorld]:
    w = ClusterWorld(tmp_path / "world")
    w.cluster = cluster
    with w:
        yield w
        for proc in w._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        w.assert_clean(15)
    cluster.wait_ready()  # a test that killed a worker leaves the cluster whole again


def step(id: str, fn: str, *depends_on: str, **fields: Any) -> dict[str, Any]:
    table: dict[str, Any] = {"id": id, "run": f"{STEPS}:{fn}"}
    if depends_on:
        table["depends_on"] = list(depends_on)
    options = {"timeout", "retries", "retry_delay"}
    args = {k: v for k, v in fields.items() if k not in options}
    if args:
        table["args"] = args
    table.update({k: v for k, v in fields.items() if k in options})
    return table


def dask_file(world: World, cluster: Cluster, steps: list[dict[str, Any]], **opts: Any) -> Path:
    return write_workflow(
        world.workdir / "wf.toml", steps, actors="dask", scheduler=cluster.address, **opts
    )


def why(result: CliResult) -> str:
    return f"exit {result.code}; stderr: {result.stderr[-3000:]}\n{json.dumps(result.doc)[:3000]}"


def test_the_diamond_gives_the_results_of_per_step_mode(world: ClusterWorld) -> None:
    diamond = ROOT / "examples" / "diamond.yaml"
    local = run_cli(world, diamond, "--param", "x=5")
    remote = run_cli(
        world, diamond, "--param", "x=5", "--actors", "dask", "--scheduler", world.cluster.address
    )
    assert local.code == remote.code == 0, why(remote)
    results = {k: v["result"] for k, v in remote.doc["steps"].items()}
    assert results == {k: v["result"] for k, v in local.doc["steps"].items()}
    assert results["merge"] == 60


def test_failures_skip_their_transitive_dependents_only(world: ClusterWorld) -> None:
    steps = [
        step("bad", "fail", message="no luck"),
        step("child", "worker_pid", "bad"),
        step("grandchild", "worker_pid", "child"),
        step("suicide", "kill_self"),
        step("after_suicide", "worker_pid", "suicide"),
        step("other", "worker_pid"),
    ]
    result = run_cli(world, dask_file(world, world.cluster, steps))
    assert result.code == 1, why(result)
    assert result.statuses() == {
        "bad": "failed",
        "child": "skipped",
        "grandchild": "skipped",
        "suicide": "failed",
        "after_suicide": "skipped",
        "other": "succeeded",
    }
    error = result.error("bad")
    assert error["type"] == "ValueError" and error["message"] == "no luck"
    assert "raise ValueError(message)" in error["traceback"]  # the remote traceback
    assert result.step("grandchild")["skipped_because"] == "bad"
    died = result.error("suicide")
    assert died["type"] == "ProcessDied" and "killed by SIGKILL" in died["message"], died
    assert result.step("other")["result"] in world.cluster.worker_processes()


def test_a_busy_loop_times_out_its_process_is_killed_and_the_worker_runs_on(
    world: ClusterWorld,
) -> None:
    pids = world.workdir / "spin.pids"
    steps = [step("spin", "spin_with_child", pid_file=str(pids), timeout=1.5)]
    result = run_cli(world, dask_file(world, world.cluster, steps))
    assert result.code == 1, why(result)
    assert result.status("spin") == "timed_out", why(result)
    assert result.error("spin")["type"] == "StepTimeout"
    attempt, child, worker = (int(p) for p in pids.read_text().split())
    assert gone(attempt) and gone(child)  # the step's process and what it started
    assert worker in world.cluster.worker_processes()  # the same Dask worker process lives
    # Two steps that wait for each other occupy both workers: one runs on the survivor.
    barrier = world.workdir / "barrier"
    barrier.mkdir()
    pair = [step(f"s{i}", "meet", folder=str(barrier), peers=2) for i in range(2)]
    again = run_cli(world, dask_file(world, world.cluster, pair))
    assert again.code == 0, why(again)
    assert worker in {again.step("s0")["result"], again.step("s1")["result"]}


def test_sigkill_of_a_dask_worker_fails_then_retries_the_step(world: ClusterWorld) -> None:
    pids = world.workdir / "hold.pids"
    steps = [step("held", "hold", pid_file=str(pids), seconds=2.0, retries=1, retry_delay=0.1)]
    cli = start_cli(world, dask_file(world, world.cluster, steps))
    worker, attempt = (int(p) for p in cli.wait_for_file(pids).split())
    assert worker in world.cluster.worker_processes()
    pids.unlink()
    os.kill(worker, signal.SIGKILL)
    result = cli.finish(timeout=90)
    assert result.code == 0, why(result)
    record = result.step("held")
    assert record["status"] == "succeeded" and record["attempts"] == 2, why(result)
    first = record["history"][0]
    assert first["status"] == "failed" and first["error_type"] == "ProcessDied"
    wait_for(lambda: gone(attempt), 10, "the killed worker's attempt process")


def test_fail_fast_kills_the_running_attempt_on_its_worker(world: ClusterWorld) -> None:
    pids = world.workdir / "hold.pids"
    steps = [
        step("held", "hold", pid_file=str(pids)),
        step("bad", "fail_when", gate=str(pids)),
        step("later", "worker_pid", "held"),
    ]
    result = run_cli(world, dask_file(world, world.cluster, steps, on_failure="fail_fast"))
    assert result.code == 1, why(result)
    assert result.statuses() == {"held": "cancelled", "bad": "failed", "later": "skipped"}
    worker, attempt = (int(p) for p in pids.read_text().split())
    assert gone(attempt)  # already when the run ended: the task confirmed it
    assert worker in world.cluster.worker_processes()  # the worker itself goes on


def test_without_an_address_a_local_cluster_runs_the_steps_and_goes(
    world: ClusterWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MCPP_DASK_SCHEDULER", raising=False)
    steps = [step("a", "worker_pid"), step("b", "worker_pid", "a")]
    wf = write_workflow(world.workdir / "wf.toml", steps, actors="dask")
    result = run_cli(world, wf, timeout=120)
    assert result.code == 0, why(result)
    ours = world.cluster.worker_processes()
    assert result.step("a")["result"] not in ours and result.step("b")["result"] not in ours
    # world's teardown proves the local cluster's scheduler and workers are gone


def test_journal_and_resume_after_sigkill_of_the_supervisor(world: ClusterWorld) -> None:
    runs_a, runs_b, gate = (world.workdir / n for n in ("a.runs", "b.runs", "gate"))
    steps = [
        step("a", "count_runs", path=str(runs_a)),
        step("b", "count_runs", "a", path=str(runs_b), gate=str(gate)),
    ]
    wf = dask_file(world, world.cluster, steps)
    argv = [sys.executable, "-m", "mcpp.supervisor", "spawn", "--json", str(wf)]
    with (world.workdir / "first.out").open("wb") as out:
        first = world.spawn(argv, cwd=world.cwd, env=cli_env(world), stdout=out, stderr=out)
    wait_for_file(runs_b, 60)  # 'a' succeeded (journalled) and 'b' is running
    wait_for(lambda: journalled_success(world, "a"), 10, "a's success in the journal")
    b_attempt = int(wait_for_file(Path(f"{runs_b}.pid"), 10))
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    # The coordinator exits for its dead supervisor; its Dask client is gone, so the worker
    # cancels the task, which ends the attempt's process: nothing of the run goes on.
    wait_for(lambda: gone(b_attempt), 15, "b's attempt process on its Dask worker")
    gate.write_text("open")
    resume = [sys.executable, "-m", "mcpp.supervisor", "resume", only_run(world), "--json"]
    done = subprocess.run(
        resume, cwd=world.cwd, env=cli_env(world), capture_output=True, timeout=90, check=False
    )
    assert done.returncode == 0, done.stdout.decode()[-3000:]
    doc = json.loads(done.stdout)
    assert doc["status"] == "succeeded"
    assert runs_a.read_text().count("ran") == 1  # not run again
    assert doc["steps"]["b"]["result"] == 2  # a second attempt, after the supervisor died


def status(world: World, *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "mcpp.supervisor", "status", *args, "--json"],
        cwd=world.cwd,
        env=cli_env(world),
        capture_output=True,
        check=False,
        timeout=30,
    )
    return json.loads(done.stdout) if done.stdout.strip() else None


def only_run(world: World) -> str:
    runs = status(world)["runs"]
    assert len(runs) == 1, runs
    return str(runs[0]["run_id"])


def journalled_success(world: World, step_id: str) -> bool:
    doc = status(world, only_run(world))
    return doc is not None and doc["steps"].get(step_id, {}).get("status") == "succeeded"


def test_an_unreachable_scheduler_is_exit_2_naming_the_address(world: ClusterWorld) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    steps = [step("never", "worker_pid")]
    wf = write_workflow(world.workdir / "wf.toml", steps, actors="dask", scheduler=address)
    result = start_cli(world, wf).finish(60, parse=False)
    assert result.code == 2
    assert address in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip() == ""  # no step started, no document


def test_a_journalled_run_whose_scheduler_is_unreachable_reads_failed_not_interrupted(
    world: ClusterWorld,
) -> None:
    from tests.runs_cli import document, mcpp

    address = f"tcp://127.0.0.1:{free_port()}"
    wf = write_workflow(
        world.workdir / "wf.toml", [step("never", "worker_pid")], actors="dask", scheduler=address
    )
    spawned = mcpp(world, "spawn", str(wf))
    assert spawned.returncode == 2 and address in spawned.stderr
    runs = document(mcpp(world, "status", "--json"))["runs"]
    assert [run["status"] for run in runs] == ["failed"]
