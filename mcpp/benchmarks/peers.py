"""Peers: the same workloads on mcpp, the stdlib baseline, Dask distributed and Ray, one run.

Every system runs the functions of :mod:`mcpp.benchmarks.workloads` on 2 worker processes
(``--workers``): mcpp in pool mode, the baseline on a ``ProcessPoolExecutor``, Dask on a
``LocalCluster`` of worker processes (one thread each), Ray with ``num_cpus`` workers (when it
is importable; skipped with a note otherwise). The systems take turns in each repetition.
Each figure is measured the same way on every system:

- ``cold_start_s`` (whole-run): a new interpreter that starts the system, runs one no-op task
  and exits, from before the process starts to its exit (mcpp: ``mcpp spawn`` of a one-step
  workflow, as a user runs it).
- ``fanout`` whole-run: steps / seconds from starting the system's processes (in this
  interpreter, imports done) to their shut-down; in-run: steps / seconds from the first
  submission (every worker started and warm) to the last result (mcpp: :class:`Span`).
- ``chain``, ``layered`` and ``cpu`` in-run as above; ``cpu`` runs ``--cpu-steps`` steps of
  ``--cpu-s`` seconds of CPU each and reports the speedup over running them one after another
  in this process.
- ``idle`` (whole tree): RSS and PSS of every process while ``--workers`` tasks sleep.

    uv run --group bench python -m mcpp.benchmarks.peers [--repeat R] [--json] [--smoke]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import msgspec
import psutil

from mcpp.benchmarks import common, memory, scaling, startup, workloads
from mcpp.benchmarks.common import Task, Timing
from mcpp.benchmarks.document import Figure, Stats, figure

__all__ = ["PEERS", "available", "main", "parser"]

PEERS = ("dask", "ray")
MODULES = {"dask": "distributed", "ray": "ray"}
# What a driver of Dask or Ray runs: start the system, run a DAG, stop. Upstream results
# travel as the systems' own futures / object refs, as their users pass them.
SCRIPTS = {
    "dask": """
        import logging, sys, time
        from distributed import Client, LocalCluster
        cluster = LocalCluster(n_workers=int(sys.argv[1]), threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
    """,
    "ray": """
        import sys, time, ray
        ray.init(num_cpus=int(sys.argv[1]), include_dashboard=False, log_to_driver=False)
    """,
}
COLD = {
    "dask": "assert client.submit(abs, -1).result() == 1\nclient.close(); cluster.close()\n",
    "ray": "assert ray.get(ray.remote(abs).remote(-1)) == 1\nray.shutdown()\n",
}
IDLE = {
    "dask": """
        from mcpp.benchmarks.workloads import sleep
        futures = [client.submit(sleep, seconds=600, pure=False) for _ in range(int(sys.argv[1]))]
        while sum(map(len, client.processing().values())) < int(sys.argv[1]):
            time.sleep(0.05)
        print("ready", flush=True)
        sys.stdin.read()  # until the benchmark is done measuring: then a clean shutdown, so
        client.cancel(futures)  # that multiprocessing removes its semaphores from /dev/shm
        client.close(); cluster.close()
    """,
}


def available(name: str) -> bool:
    """Whether peer ``name`` (``dask`` or ``ray``) can be imported here."""
    return importlib.util.find_spec(MODULES[name]) is not None


def parser() -> argparse.ArgumentParser:
    """The options of this benchmark."""
    p = common.base_parser("peers", "The same workloads on mcpp, stdlib, Dask, Ray.", workers=2)
    p.add_argument("--n", type=int, default=1000, help="fan-out size (1000)")
    p.add_argument("--chain", type=int, default=200, help="chain length (200)")
    p.add_argument("--layers", type=int, default=10, help="layers of the DAG (10)")
    p.add_argument("--width", type=int, default=50, help="width of the DAG (50)")
    p.add_argument("--cpu-steps", type=int, default=8, help="CPU-bound steps (8)")
    p.add_argument("--cpu-s", type=float, default=0.5, help="CPU seconds of each (0.5)")
    return p


@contextmanager
def open_peer(name: str, workers: int) -> Iterator[Callable[[Sequence[Task]], None]]:
    """Start peer ``name`` with ``workers`` worker processes; yield ``run(tasks)``, which runs
    a DAG on it and returns once every result is in (raising if a task failed)."""
    if name == "dask":
        dist: Any = importlib.import_module("distributed")  # untyped: Any
        cluster = dist.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True,
            dashboard_address=None, silence_logs=logging.ERROR,
        )  # fmt: skip
        client = dist.Client(cluster)

        def run_dask(tasks: Sequence[Task]) -> None:
            futures: dict[str, Any] = {}
            for t in tasks:  # every shape lists a task after its dependencies
                deps = {d: futures[d] for d in t.deps}
                futures[t.id] = client.submit(t.fn, **t.args, **deps, pure=False)
            dist.wait(list(futures.values()))
            client.gather(list(futures.values()))  # raises the first task's error

        try:
            yield run_dask
        finally:
            client.close()
            cluster.close()
    else:
        ray: Any = importlib.import_module("ray")
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)

        def run_ray(tasks: Sequence[Task]) -> None:
            refs: dict[str, Any] = {}
            for t in tasks:
                deps = {d: refs[d] for d in t.deps}
                refs[t.id] = ray.remote(t.fn).remote(**t.args, **deps)
            ray.get(list(refs.values()))

        try:
            yield run_ray
        finally:
            ray.shutdown()


def time_peer(name: str, tasks: Sequence[Task], workers: int) -> Timing:
    """Run ``tasks`` on a new instance of peer ``name``, timed as :func:`span_baseline`
    times the baseline (``wall``: start to shut-down; ``span``: warm, first submit to last
    result)."""
    began = time.perf_counter()
    with open_peer(name, workers) as run:
        run(common.fanout(4 * workers))
        started = time.perf_counter()
        run(tasks)
        span = time.perf_counter() - started
    return Timing(time.perf_counter() - began, span)


def time_mcpp(tasks: Sequence[Task], workers: int, timeout: float) -> Timing:
    """Run ``tasks`` on mcpp in pool mode (journalled, as ``spawn`` runs); its Timing."""
    spec = common.to_spec(tasks, name="peers", mode="pool", workers=workers,
                          max_concurrent=workers)  # fmt: skip
    clock = common.Span()
    _, wall = common.run_mcpp(spec, timeout=timeout, on_event=clock, journal=True)
    return Timing(wall, clock.seconds)


def idle_peer(name: str, workers: int) -> tuple[float, float]:
    """RSS and PSS (MiB) of every process of a driver of ``name`` whose ``workers`` tasks
    sleep."""
    script = textwrap.dedent(SCRIPTS[name]) + textwrap.dedent(IDLE[name])
    proc = psutil.Popen(
        [sys.executable, "-c", script, str(workers)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise common.BenchmarkError(f"{name}'s idle driver exited with {proc.wait()}")
        memory.wait_for(f"{name} idle", lambda: True)  # settle
        tree = [proc.pid, *(p.pid for p in proc.children(recursive=True))]
        return memory.rss_mib(tree), memory.pss_mib(tree)
    finally:
        assert proc.stdin is not None
        with suppress(BrokenPipeError):
            proc.stdin.close()  # the driver shuts its cluster down
        try:
            proc.wait(30)
        except psutil.TimeoutExpired:
            memory.stop(proc, kill=True)


def shapes(args: argparse.Namespace, iterations: int) -> dict[str, list[Task]]:
    """The workloads, named with their sizes."""
    cpu = Task("s", workloads.spin, {"iterations": iterations})
    return {
        f"fanout({args.n}+join)": common.fanout(args.n),
        f"chain({args.chain})": common.chain(args.chain),
        f"layered({args.layers}x{args.width})": common.layered(args.layers, args.width),
        f"cpu({args.cpu_steps}x{args.cpu_s:g}s)": [
            cpu._replace(id=f"s{i}") for i in range(args.cpu_steps)
        ],
    }


def with_peers(fig: Figure, values: dict[str, list[float]]) -> Figure:
    """``fig`` with the peers' stats of ``values`` (peer -> repetitions)."""
    return msgspec.structs.replace(fig, peers={k: Stats.of(v) for k, v in values.items() if v})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its document; return the exit code."""
    args = parser().parse_args(argv)
    if args.smoke:
        args.n, args.chain, args.layers, args.width = 3, 3, 2, 2
        args.cpu_steps, args.cpu_s = 2, 0.01
    peers = [name for name in PEERS if available(name)]
    notes: dict[str, Any] = {
        name: "not importable here: skipped" for name in PEERS if name not in peers
    }
    notes |= {
        "whole_run": "cold_start_s: a new interpreter's whole life; */whole_run_*: the "
        "system's processes started (in the benchmark's interpreter) .. shut down",
        "in_run": common.IN_RUN + "; peers as the baseline",
        "mcpp": f"pool mode, {args.workers} workers, journalled (as mcpp spawn runs)",
        "peers": "dask: LocalCluster, worker processes of 1 thread; ray: ray.init(num_cpus)",
        "idle": "every process of the tree while --workers tasks sleep",
    }
    common.warm_up(args)
    iterations = scaling.calibrate(args.cpu_s)
    serial = time.perf_counter()
    for _ in range(args.cpu_steps):
        workloads.spin(iterations)
    serial = time.perf_counter() - serial
    named = shapes(args, iterations)
    timings: dict[str, dict[str, list[Timing]]] = {
        name: {s: [] for s in ("mcpp", "baseline", *peers)} for name in named
    }
    cold: dict[str, list[float]] = {s: [] for s in ("mcpp", "baseline", *peers)}
    idle: dict[str, list[tuple[float, float]]] = {s: [] for s in ("mcpp", "baseline", *peers)}
    with tempfile.TemporaryDirectory() as tmp:
        one = common.write_workflow(
            Path(tmp, "one.json"), [Task("only", workloads.noop)], mode="pool",
            workers=args.workers,
        )  # fmt: skip
        commands = {
            "mcpp": [sys.executable, "-m", "mcpp.supervisor", "spawn", str(one), "--quiet"],
            "baseline": [sys.executable, "-c",
                         startup.BASELINE.replace("(1)", f"({args.workers})")],
            **{p: [sys.executable, "-c", textwrap.dedent(SCRIPTS[p]) + COLD[p],
                   str(args.workers)] for p in peers},
        }  # fmt: skip
        for _ in range(args.repeat):
            for system, cmd in commands.items():
                cold[system].append(startup.time_process(cmd, args.timeout))
            for name, tasks in named.items():
                runs = timings[name]
                runs["mcpp"].append(time_mcpp(tasks, args.workers, args.timeout))
                runs["baseline"].append(common.span_baseline(tasks, args.workers))
                for p in peers:
                    runs[p].append(time_peer(p, tasks, args.workers))
            one_idle = memory.idle_mcpp("pool", args.workers, Path(tmp))
            idle["mcpp"].append((one_idle.tree_rss, one_idle.pss))
            base_idle = memory.idle_baseline(args.workers)
            idle["baseline"].append((base_idle.tree_rss, base_idle.pss))
            for p in peers:
                if p in IDLE:
                    idle[p].append(idle_peer(p, args.workers))

    def fig(unit: str, values: dict[str, list[float]]) -> Figure:
        others = {p: values[p] for p in peers}
        return with_peers(figure(unit, values["mcpp"], values["baseline"]), others)

    def of(name: str, value: Callable[[Timing], float]) -> dict[str, list[float]]:
        return {s: [*map(value, runs)] for s, runs in timings[name].items()}

    fan, chain, layered, cpu = named
    steps = {name: len(tasks) for name, tasks in named.items()}
    figures = {
        "cold_start_s": fig("s", cold),
        fan: {
            "whole_run_steps_per_s": fig("steps/s", of(fan, lambda t: steps[fan] / t.wall)),
            "in_run_steps_per_s": fig("steps/s", of(fan, lambda t: steps[fan] / t.span)),
        },
        chain: {"in_run_ms_per_hop": fig("ms", of(chain, lambda t: 1000 * t.span / steps[chain]))},
        layered: {
            "in_run_steps_per_s": fig("steps/s", of(layered, lambda t: steps[layered] / t.span))
        },
        cpu: {"in_run_speedup": fig("x", of(cpu, lambda t: serial / t.span))},
        "idle": {
            "total_rss_mib": fig("MiB", {s: [r for r, _ in v] for s, v in idle.items()}),
            "total_pss_mib": fig("MiB", {s: [p for _, p in v] for s, v in idle.items()}),
        },
    }
    if "ray" in peers:
        notes["ray_idle"] = "not measured (no readiness signal for sleeping Ray tasks)"
    return common.finish("peers", args, {"pool": figures}, notes)


if __name__ == "__main__":
    raise SystemExit(main())
