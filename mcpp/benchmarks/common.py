"""What every benchmark shares: workload shapes, the options, the two runners.

A workload is a DAG of :class:`Task` s naming functions of :mod:`mcpp.benchmarks.workloads`.
:func:`run_mcpp` runs it as a mcpp workflow (this process is the supervisor);
:func:`span_baseline` runs it on a stdlib ``ProcessPoolExecutor`` driven by a plain DAG loop
(:func:`run_dag`: submit each task when its dependencies are done, pass upstream results as
keyword arguments, exactly as mcpp does).

In-run timing (:class:`Span`, :func:`span_baseline`) leaves start-up and tear-down out: for mcpp
the clock runs from the first ``StepStarted`` of the run to ``RunFinished``; for the baseline,
on a pool whose workers are already started and warm, from the first submission to the last
result.
The figures and the document: :mod:`mcpp.benchmarks.document`.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import queue
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import trio

from mcpp import protocol
from mcpp.benchmarks import workloads
from mcpp.benchmarks.document import Figure, figure
from mcpp.supervisor.results import RunRecorder, RunResult
from mcpp.supervisor.resume import run_journalled
from mcpp.supervisor.run import EventHook, run_spec
from mcpp.workflow.spec import ActorMode, StepSpec, WorkflowSpec

__all__ = [
    "MODES",
    "BenchmarkError",
    "Runs",
    "Span",
    "Submit",
    "Task",
    "Timing",
    "base_parser",
    "chain",
    "compare",
    "fanout",
    "layered",
    "open_baseline",
    "run_dag",
    "run_mcpp",
    "span_baseline",
    "span_mcpp",
    "target",
    "to_spec",
    "warm_up",
    "write_workflow",
]

# trio 0.23.2 calls APIs newer Pythons deprecate; the warnings say nothing about the benchmark.
warnings.filterwarnings("ignore", category=trio.TrioDeprecationWarning)

MODES: tuple[ActorMode, ...] = ("per_step", "pool")

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
    return [
        Task(
            f"l{layer}_{j}",
            fn,
            deps=tuple(dict.fromkeys(f"l{layer - 1}_{k % width}" for k in (j, j + 1)))
            if layer
            else (),
        )
        for layer in range(layers)
        for j in range(width)
    ]


def target(fn: Callable[..., Any]) -> str:
    """Return ``"module:function"`` for a function of :mod:`workloads`."""
    return f"{fn.__module__}:{fn.__qualname__}"


# --- options and the runners ------------------------------------------------------------


def base_parser(name: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark has."""

    def modes(text: str) -> list[str]:
        chosen = [m for m in text.split(",") if m]
        if not chosen or set(chosen) - set(MODES):
            raise argparse.ArgumentTypeError(f"modes are {','.join(MODES)}, not {text!r}")
        return chosen

    parser = argparse.ArgumentParser(
        prog=f"python -m mcpp.benchmarks.{name}", description=description
    )
    parser.add_argument("--repeat", type=int, default=3, metavar="R", help="repetitions (3)")
    parser.add_argument("--json", action="store_true", help="print the JSON document")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: finish in seconds")
    parser.add_argument(
        "--modes", type=modes, default=list(MODES), help="actor modes, comma-separated"
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, metavar="S", help="limit of one run (600 s)"
    )
    return parser


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
        name=name, steps=steps, actors=mode, workers=workers, max_concurrent=max_concurrent
    )


def write_workflow(path: Path, tasks: Sequence[Task], *, mode: ActorMode, workers: int) -> Path:
    """Write ``tasks`` as a JSON workflow file for the CLI (``workers`` at once); return it."""
    steps = [{"id": t.id, "run": target(t.fn), "args": dict(t.args)} for t in tasks]
    workflow = {"name": path.stem, "actors": mode, "workers": workers, "max_concurrent": workers}
    path.write_bytes(msgspec.json.encode({"workflow": workflow, "steps": steps}))
    return path


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


class Timing(NamedTuple):
    """A run's whole time (start-up and tear-down included) and its in-run span, seconds."""

    wall: float
    span: float


def span_mcpp(spec: WorkflowSpec, *, timeout: float, journal: bool = False) -> Timing:
    """Run ``spec`` (see :func:`run_mcpp`); return its :class:`Timing`."""
    clock = Span()
    _, wall = run_mcpp(spec, timeout=timeout, on_event=clock, journal=journal)
    return Timing(wall, clock.seconds)


class Runs(NamedTuple):
    """The timings of one workload on mcpp and on the baseline, a repetition each."""

    mcpp: list[Timing]
    baseline: list[Timing]

    def figure(self, unit: str, value: Callable[[Timing], float], **options: Any) -> Figure:
        """The :func:`figure` of ``value(timing)`` on both systems."""
        return figure(unit, [*map(value, self.mcpp)], [*map(value, self.baseline)], **options)


def compare(
    args: argparse.Namespace,
    mode: ActorMode,
    named: Mapping[str, tuple[Sequence[Task], int]],
    *,
    journal: bool = False,
) -> dict[str, Runs]:
    """Time each workload (``name -> (tasks, workers)``) on mcpp in ``mode`` and on the
    baseline with as many workers, ``args.repeat`` times, the two systems taking turns."""
    runs = {name: Runs([], []) for name in named}
    for _ in range(args.repeat):
        for name, (tasks, workers) in named.items():
            spec = to_spec(
                tasks, name="benchmark", mode=mode, workers=workers, max_concurrent=workers
            )
            runs[name].mcpp.append(span_mcpp(spec, timeout=args.timeout, journal=journal))
            runs[name].baseline.append(span_baseline(tasks, workers))
    return runs


def warm_up(args: argparse.Namespace) -> None:
    """Run one no-op task on the baseline (starts its forkserver) and, unless ``--smoke``, on
    mcpp (imports, file cache), unmeasured."""
    one = chain(1)
    if not args.smoke:
        run_mcpp(to_spec(one, name="warm-up", mode="per_step"), timeout=args.timeout)
    span_baseline(one, 1)


# --- baseline --------------------------------------------------------------------------------


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


@contextmanager
def open_baseline(workers: int) -> Iterator[Submit]:
    """Yield ``submit`` of a new ProcessPoolExecutor with ``workers`` processes.

    Its context is 'forkserver', not 'fork': the benchmark process runs trio and the actor
    layer, and forking a process with threads is unsafe. The forkserver preloads
    :mod:`workloads`, as a real user's pool would.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([workloads.__name__])
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    try:
        yield lambda fn, kwargs: pool.submit(fn, **kwargs)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def span_baseline(tasks: Sequence[Task], workers: int) -> Timing:
    """Run ``tasks`` on a new pool of ``workers``; return its :class:`Timing`.

    ``wall`` runs from creating the pool to its shutdown; ``span`` from the first submission,
    once a fan-out of ``4 * workers`` no-ops has started and warmed every worker, to the last
    result.
    """
    began = time.perf_counter()
    with open_baseline(workers) as submit:
        run_dag(submit, fanout(4 * workers))
        started = time.perf_counter()
        run_dag(submit, tasks)
        span = time.perf_counter() - started
    return Timing(time.perf_counter() - began, span)
