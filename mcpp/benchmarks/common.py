"""What every benchmark shares: workload shapes, the two runners, statistics, the document.

A workload is a DAG of :class:`Task` s naming functions of :mod:`mcpp.benchmarks.workloads`.
:func:`run_mcpp` runs it as a mcpp workflow (this process is the supervisor);
:func:`run_baseline` runs it on a stdlib ``ProcessPoolExecutor`` driven by a plain DAG loop
(:func:`run_dag`: submit each task when its dependencies are done, pass upstream results as
keyword arguments, exactly as mcpp does). Optional peers (Ray, Dask), when importable, run
through the same loop (:func:`open_peer`).

In-run timing (:class:`Span`, :func:`span_baseline`) leaves start-up and tear-down out: for mcpp
the clock runs from the first ``StepStarted`` event the supervisor sees to ``RunFinished``; for
the baseline, on a pool whose workers are already started and warm, from the first submission
to the last result.

Every figure is ``{"unit", "mcpp", "baseline", "ratio", "target", "meets_target", ...}`` where
``mcpp`` and ``baseline`` are ``{"min", "median", "max"}`` over the repetitions, ``ratio`` is
median mcpp / median baseline, ``target`` is the issue's target for mcpp's median
(``{"op": ">=" or "<=" or "<", "value"}``, or None where the issue sets none) and
``meets_target`` says whether the median meets it (None without a target). Each benchmark
prints one document from :func:`document`.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import importlib
import importlib.metadata
import importlib.util
import multiprocessing
import os
import platform
import queue
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import msgspec
import psutil
import trio

from mcpp import protocol
from mcpp.benchmarks import workloads
from mcpp.supervisor.results import RunRecorder, RunResult
from mcpp.supervisor.resume import run_journalled
from mcpp.supervisor.run import EventHook, run_spec
from mcpp.workflow.spec import ActorMode, StepSpec, WorkflowSpec

__all__ = [
    "MODES",
    "BenchmarkError",
    "Span",
    "Submit",
    "Task",
    "base_parser",
    "chain",
    "descendants",
    "document",
    "emit",
    "fanout",
    "figure",
    "goal",
    "layered",
    "machine_info",
    "meets",
    "open_baseline",
    "open_peer",
    "peers_available",
    "probe_pool",
    "run_baseline",
    "run_dag",
    "run_mcpp",
    "selected_modes",
    "span_baseline",
    "span_on",
    "span_peer",
    "stats",
    "target",
    "to_spec",
    "warm_up",
]

# trio 0.23.2 calls APIs newer Pythons deprecate; the warnings say nothing about the benchmark.
warnings.filterwarnings("ignore", category=trio.TrioDeprecationWarning)

MODES: tuple[ActorMode, ...] = ("per_step", "pool")
PACKAGES = ("mcpp", "trio", "msgspec", "psutil")
OPTIONAL_PEERS = ("ray", "dask")
POOL_PROBE_TIMEOUT = 60.0

Submit = Callable[[Callable[..., Any], dict[str, Any]], "cf.Future[Any]"]


class BenchmarkError(Exception):
    """A measured run did not do what the benchmark needs (a step failed, a run hung)."""


class Task(NamedTuple):
    """One task of a workload: an id, a function of :mod:`workloads`, its args, dependencies."""

    id: str
    fn: Callable[..., Any]
    args: Mapping[str, Any] = {}
    deps: tuple[str, ...] = ()
    timeout: float | None = None


# --- shapes ----------------------------------------------------------------------------------


def fanout(n: int, fn: Callable[..., Any] = workloads.noop) -> list[Task]:
    """``n`` independent tasks plus one join that depends on all of them."""
    tasks = [Task(f"t{i}", fn) for i in range(n)]
    return [*tasks, Task("join", workloads.noop, deps=tuple(t.id for t in tasks))]


def chain(n: int, fn: Callable[..., Any] = workloads.noop) -> list[Task]:
    """``n`` tasks, each depending on the one before."""
    return [Task(f"t{i}", fn, deps=(f"t{i - 1}",) if i else ()) for i in range(n)]


def layered(layers: int, width: int, fn: Callable[..., Any] = workloads.noop) -> list[Task]:
    """``layers`` x ``width`` tasks; task j of a layer depends on tasks j and j+1 (mod width)
    of the layer before."""
    tasks = []
    for layer in range(layers):
        for j in range(width):
            deps: tuple[str, ...] = ()
            if layer:
                deps = tuple(
                    dict.fromkeys((f"l{layer - 1}_{j}", f"l{layer - 1}_{(j + 1) % width}"))
                )
            tasks.append(Task(f"l{layer}_{j}", fn, deps=deps))
    return tasks


def target(fn: Callable[..., Any]) -> str:
    """Return ``"module:function"`` for a function of :mod:`workloads`."""
    return f"{fn.__module__}:{fn.__qualname__}"


# --- mcpp ------------------------------------------------------------------------------------


def to_spec(
    tasks: Sequence[Task],
    *,
    name: str,
    mode: ActorMode,
    workers: int | None = None,
    max_concurrent: int | None = None,
) -> WorkflowSpec:
    """Return the WorkflowSpec of ``tasks`` (pool mode with ``workers`` worker actors)."""
    steps = tuple(
        StepSpec(id=t.id, run=target(t.fn), args=dict(t.args), depends_on=t.deps, timeout=t.timeout)
        for t in tasks
    )
    return WorkflowSpec(
        name=name,
        steps=steps,
        actors=mode,
        workers=workers,
        max_concurrent=max_concurrent,
    )


def run_mcpp(
    spec: WorkflowSpec,
    *,
    timeout: float,
    on_event: EventHook | None = None,
    expect: str | None = "succeeded",
    journal: bool = False,
) -> tuple[RunResult, float]:
    """Run ``spec`` with this process as the supervisor; return the result and the wall time.

    With ``journal`` the run is journalled (:func:`run_journalled`, as ``spawn`` runs it) in a
    temporary MCPP home, removed afterwards. Raises BenchmarkError if the run takes longer than
    ``timeout`` seconds or its status is not ``expect`` (``None`` accepts any status).
    """

    async def main(home: str | None) -> RunResult | None:
        with trio.move_on_after(timeout):
            if home is not None:
                return await run_journalled(
                    spec, home=home, on_event=on_event, handle_signals=False
                )
            return await run_spec(spec, on_event=on_event, handle_signals=False)
        return None

    with tempfile.TemporaryDirectory(prefix="mcpp-bench-") as tmp:
        began = time.perf_counter()
        result = trio.run(main, tmp if journal else None)
        wall = time.perf_counter() - began
    if result is None:
        raise BenchmarkError(f"mcpp run {spec.name!r} did not finish within {timeout:g} s")
    if expect is not None and result.status != expect:
        errors = {k: v.error.message for k, v in result.steps.items() if v.error is not None}
        raise BenchmarkError(f"mcpp run {spec.name!r} ended {result.status}: {errors}")
    return result, wall


class Span:
    """An event hook that times a run in-run, leaving out the actor tree's start and stop.

    The span runs from the earliest ``StepStarted.at`` (the time a worker stamped when it began
    a step) to the moment the supervisor sees ``RunFinished``. Both are ``time.time()`` of this
    machine. The first ``StepStarted`` the supervisor *sees* is no start mark: the coordinator
    batches events, so it may arrive after many steps are done. Pass a Span as ``on_event``;
    read :attr:`seconds` after the run.
    """

    def __init__(self) -> None:
        self.began: float | None = None
        self.ended: float | None = None

    def __call__(self, recorder: RunRecorder, event: Any) -> None:
        if isinstance(event, protocol.StepStarted):
            if self.began is None or event.at < self.began:
                self.began = event.at
        elif isinstance(event, protocol.RunFinished):
            self.ended = time.time()

    @property
    def seconds(self) -> float:
        """The span in seconds. Raises BenchmarkError if the run did not report both ends."""
        if self.began is None or self.ended is None:
            raise BenchmarkError("the run reported no StepStarted or no RunFinished")
        return self.ended - self.began


def probe_pool(timeout: float = POOL_PROBE_TIMEOUT) -> str | None:
    """Try a tiny pool-mode run once; return None if pool mode works, else the reason.

    Pool mode works if two steps run with ``workers=1`` report the same process id.
    """
    tasks = [Task("a", workloads.getpid), Task("b", workloads.getpid)]
    spec = to_spec(tasks, name="pool-probe", mode="pool", workers=1, max_concurrent=1)
    try:
        result, _ = run_mcpp(spec, timeout=timeout)
    except Exception as exc:
        return f"a pool-mode probe run failed: {type(exc).__name__}: {exc}"
    pids = {step.result for step in result.steps.values()}
    if len(pids) != 1:
        return "pool mode is not implemented yet: actors='pool' ran each step in its own process"
    return None


def warm_up(timeout: float, *, mcpp: bool = True) -> None:
    """Run one no-op task on the baseline (starts its forkserver) and, with ``mcpp``, on mcpp
    (imports, file cache), unmeasured."""
    one = chain(1)
    if mcpp:
        run_mcpp(to_spec(one, name="warm-up", mode="per_step"), timeout=timeout)
    run_baseline(one, 1)


def selected_modes(args: argparse.Namespace, notes: dict[str, str]) -> dict[ActorMode, str | None]:
    """Map each mode in ``args.modes`` to None (measure it) or the reason it is unavailable.

    A reason is also written to ``notes`` under ``"<mode>_unavailable"``. Runs
    :func:`warm_up` first (without mcpp's warm-up run with ``--smoke``).
    """
    warm_up(args.timeout, mcpp=not args.smoke)
    chosen: dict[ActorMode, str | None] = {}
    for mode in MODES:
        if mode not in args.modes:
            continue
        reason = probe_pool(args.timeout) if mode == "pool" else None
        chosen[mode] = reason
        if reason is not None:
            notes[f"{mode}_unavailable"] = reason
    return chosen


# --- baseline and peers ----------------------------------------------------------------------


def run_dag(submit: Submit, tasks: Sequence[Task]) -> dict[str, Any]:
    """Run ``tasks`` through ``submit``: each as soon as its dependencies are done.

    Upstream results are passed as keyword arguments named by the upstream task id. Returns
    every task's result; the first task to raise makes this raise the same exception. Each
    future's done callback queues it, so the loop costs O(1) a task (``cf.wait`` over every
    pending future would cost O(pending) a wake-up: quadratic in a wide fan-out).
    """
    waiting = {t.id: set(t.deps) for t in tasks}
    dependents: dict[str, list[str]] = {t.id: [] for t in tasks}
    for t in tasks:
        for dep in t.deps:
            dependents[dep].append(t.id)
    by_id = {t.id: t for t in tasks}
    results: dict[str, Any] = {}
    finished: queue.SimpleQueue[tuple[str, cf.Future[Any]]] = queue.SimpleQueue()
    running = 0

    def start(task_id: str) -> None:
        nonlocal running
        task = by_id[task_id]
        kwargs = dict(task.args)
        kwargs.update((dep, results[dep]) for dep in task.deps)
        future = submit(task.fn, kwargs)
        running += 1
        future.add_done_callback(lambda done: finished.put((task_id, done)))

    for task_id, deps in waiting.items():
        if not deps:
            start(task_id)
    while running:
        task_id, future = finished.get()
        running -= 1
        results[task_id] = future.result()
        for child in dependents[task_id]:
            waiting[child].discard(task_id)
            if not waiting[child]:
                start(child)
    return results


def baseline_context() -> Any:
    """The multiprocessing context of the baseline: 'forkserver', warmed up once.

    Not 'fork': the benchmark process runs trio and tractor, and forking a process with threads
    is unsafe. The forkserver preloads :mod:`workloads`, as a real user's pool would.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([workloads.__name__])
    return ctx


@contextmanager
def open_baseline(workers: int) -> Iterator[tuple[Submit, cf.ProcessPoolExecutor]]:
    """Yield ``submit`` of a new ProcessPoolExecutor with ``workers`` processes, and the pool."""
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=baseline_context())
    try:
        yield (lambda fn, kwargs: pool.submit(fn, **kwargs)), pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_baseline(tasks: Sequence[Task], workers: int) -> tuple[dict[str, Any], float]:
    """Run ``tasks`` on a new pool of ``workers``; return the results and the wall time.

    The time includes starting and shutting down the pool, as mcpp's includes its actor tree.
    """
    began = time.perf_counter()
    with open_baseline(workers) as (submit, _):
        results = run_dag(submit, tasks)
    return results, time.perf_counter() - began


def span_on(submit: Submit, tasks: Sequence[Task], workers: int) -> float:
    """Warm ``submit``'s workers (a fan-out of ``4 * workers`` no-ops starts every one of them
    and runs the loop once), then run ``tasks``; return the seconds from the first submission
    to the last result."""
    run_dag(submit, fanout(4 * workers))
    began = time.perf_counter()
    run_dag(submit, tasks)
    return time.perf_counter() - began


def span_baseline(tasks: Sequence[Task], workers: int) -> tuple[float, float]:
    """Run ``tasks`` on a new pool of ``workers``; return (wall, span).

    ``wall`` runs from creating the pool to its shutdown (start-up included); ``span`` from the
    first submission, once every worker is started and warm, to the last result.
    """
    began = time.perf_counter()
    with open_baseline(workers) as (submit, _):
        span = span_on(submit, tasks, workers)
    return time.perf_counter() - began, span


def span_peer(name: str, tasks: Sequence[Task], workers: int) -> tuple[float, float]:
    """Run ``tasks`` on peer ``name``, as :func:`span_baseline`; return (wall, span)."""
    began = time.perf_counter()
    with open_peer(name, workers) as submit:
        span = span_on(submit, tasks, workers)
    return time.perf_counter() - began, span


def peers_available() -> list[str]:
    """The optional peers (``ray``, ``dask``) that can be imported here; never installed."""
    found = []
    for name in OPTIONAL_PEERS:
        module = "distributed" if name == "dask" else name
        if importlib.util.find_spec(module) is not None:
            found.append(name)
    return found


@contextmanager
def open_peer(name: str, workers: int) -> Iterator[Submit]:
    """Yield ``submit`` for peer ``name`` (``ray`` or ``dask``) with ``workers`` processes."""
    if name == "ray":
        ray: Any = importlib.import_module("ray")
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        remote: dict[Callable[..., Any], Any] = {}

        def submit_ray(fn: Callable[..., Any], kwargs: dict[str, Any]) -> cf.Future[Any]:
            if fn not in remote:
                remote[fn] = ray.remote(fn)
            future: cf.Future[Any] = remote[fn].remote(**kwargs).future()
            return future

        try:
            yield submit_ray
        finally:
            ray.shutdown()
    elif name == "dask":
        distributed: Any = importlib.import_module("distributed")
        cluster = distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = distributed.Client(cluster)
        executor = client.get_executor(pure=False)
        try:
            yield lambda fn, kwargs: executor.submit(fn, **kwargs)
        finally:
            executor.shutdown()
            client.close()
            cluster.close()
    else:
        raise ValueError(f"unknown peer {name!r}")


def run_peer(name: str, tasks: Sequence[Task], workers: int) -> float:
    """Run ``tasks`` on peer ``name`` (started and stopped inside); return the wall time."""
    began = time.perf_counter()
    with open_peer(name, workers) as submit:
        run_dag(submit, tasks)
    return time.perf_counter() - began


# --- statistics and the document -------------------------------------------------------------


def stats(values: Sequence[float]) -> dict[str, float] | None:
    """``{"min", "median", "max"}`` of ``values`` (6 significant digits); None if empty."""
    if not values:
        return None
    return {
        key: float(f"{fn(values):.6g}")
        for key, fn in (("min", min), ("median", statistics.median), ("max", max))
    }


def goal(op: str, value: float) -> dict[str, Any]:
    """A target of the issue for a figure's median: ``op`` is ``">="``, ``"<="`` or ``"<"``."""
    if op not in COMPARE:
        raise ValueError(f"unknown target operator {op!r}")
    return {"op": op, "value": value}


COMPARE: Mapping[str, Callable[[float, float], bool]] = {
    ">=": lambda got, want: got >= want,
    "<=": lambda got, want: got <= want,
    "<": lambda got, want: got < want,
}


def meets(value: Mapping[str, float] | None, want: Mapping[str, Any] | None) -> bool | None:
    """Whether the median of ``value`` meets target ``want``; None if either is missing."""
    if value is None or want is None:
        return None
    return COMPARE[want["op"]](value["median"], want["value"])


def figure(
    unit: str,
    mcpp: Sequence[float],
    baseline: Sequence[float] | None,
    peers: Mapping[str, Sequence[float]] | None = None,
    *,
    target: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One figure: mcpp's and the baseline's stats, their ratio (medians), the issue's
    ``target`` for mcpp's median (see :func:`goal`) and whether it is met, and the peers'."""
    mine, base = stats(mcpp), stats(baseline or [])
    ratio = None
    if mine is not None and base is not None and base["median"]:
        ratio = float(f"{mine['median'] / base['median']:.4g}")
    out: dict[str, Any] = {
        "unit": unit,
        "mcpp": mine,
        "baseline": base,
        "ratio": ratio,
        "target": None if target is None else dict(target),
        "meets_target": meets(mine, target),
    }
    for name, values in (peers or {}).items():
        out[name] = stats(values)
    out.update(extra)
    return out


def machine_info() -> dict[str, Any]:
    """CPU count, load, Python, platform and the versions of mcpp and its runtime."""
    versions: dict[str, str | None] = {}
    for name in (*PACKAGES, *peers_available()):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": versions,
    }


def document(
    name: str,
    args: argparse.Namespace,
    figures: Mapping[str, Any],
    notes: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The JSON document of benchmark ``name``: parameters, machine, figures, notes."""
    params = {k: v for k, v in vars(args).items() if k not in ("json", "func")}
    return {
        "benchmark": name,
        "parameters": params,
        "machine": machine_info(),
        "baseline": "concurrent.futures.ProcessPoolExecutor ('forkserver') + a plain DAG loop",
        "peers": peers_available(),
        "figures": dict(figures),
        "notes": dict(notes or {}),
        **extra,
    }


def base_parser(name: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark has."""
    parser = argparse.ArgumentParser(
        prog=f"python -m mcpp.benchmarks.{name}", description=description
    )
    parser.add_argument("--repeat", type=int, default=3, metavar="R", help="repetitions (3)")
    parser.add_argument("--json", action="store_true", help="print the JSON document")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: finish in seconds")
    parser.add_argument(
        "--modes",
        type=lambda text: [m for m in text.split(",") if m],
        default=list(MODES),
        help="actor modes to measure, comma-separated (per_step,pool)",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, metavar="S", help="limit of one run (600 s)"
    )
    return parser


def emit(doc: Mapping[str, Any]) -> None:
    """Print ``doc`` as one JSON document on standard output."""
    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(doc)) + b"\n")
    sys.stdout.flush()


def descendants() -> set[int]:
    """Pids of the living (non-zombie) descendants of this process."""
    alive = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return alive
