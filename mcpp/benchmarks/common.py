"""What every benchmark shares: workload shapes, the options, the two runners.

A workload is a DAG of :class:`Task` s naming functions of :mod:`mcpp.benchmarks.workloads`.
:func:`run_mcpp` runs it as a mcpp workflow (this process is the supervisor);
:func:`span_baseline` runs it on a stdlib ``ProcessPoolExecutor`` driven by :func:`run_dag`, a
plain DAG loop that passes upstream results as keyword arguments, exactly as mcpp does.
:func:`compare` times a workload on both, in-run (:class:`Span`: start-up and tear-down left
out). The figures and the document: :mod:`mcpp.benchmarks.document`.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import graphlib
import multiprocessing
import os
import queue
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

import msgspec
import trio

from mcpp import protocol
from mcpp.benchmarks import workloads
from mcpp.benchmarks.document import Figure, Figures, document, figure, output
from mcpp.supervisor.results import RunRecorder, RunResult
from mcpp.supervisor.resume import run_journalled
from mcpp.supervisor.run import EventHook, run_spec
from mcpp.workflow.spec import ActorMode, StepSpec, WorkflowSpec

__all__ = [
    "CPUS", "IN_RUN", "WALL_S", "BenchmarkError", "Runs", "Span", "Task", "Timing", "base_parser",
    "chain", "comma_list", "compare", "fanout", "finish", "layered", "open_baseline", "run_dag",
    "run_mcpp", "to_spec", "warm_up", "write_workflow",
]  # fmt: skip

# trio 0.23.2 calls APIs newer Pythons deprecate; the warnings say nothing about the benchmark.
warnings.filterwarnings("ignore", category=trio.TrioDeprecationWarning)

MODES: tuple[ActorMode, ...] = ("per_step", "pool")
CPUS = os.cpu_count() or 1

T = TypeVar("T")
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

    def deps(layer: int, j: int) -> tuple[str, ...]:
        below = (f"l{layer - 1}_{k % width}" for k in (j, j + 1))
        return tuple(dict.fromkeys(below)) if layer else ()

    return [Task(f"l{i}_{j}", fn, deps=deps(i, j)) for i in range(layers) for j in range(width)]


def target(fn: Callable[..., Any]) -> str:
    """Return ``"module:function"`` for a function of :mod:`workloads`."""
    return f"{fn.__module__}:{fn.__qualname__}"


IN_RUN = (
    "mcpp: earliest StepStarted.at (stamped by the worker) .. RunFinished seen by the "
    "supervisor; baseline: every worker started and warm, first submit .. last result"
)
WALL_S = "the whole run, start-up and tear-down included"


def comma_list(convert: Callable[[str], Any] = str, choices: Sequence[Any] = ()) -> Any:
    """An argparse ``type``: comma-separated values, each converted, from ``choices`` if any."""

    def parse(text: str) -> list[Any]:
        chosen = [convert(item) for item in text.split(",") if item]
        wrong = [c for c in chosen if choices and c not in choices]
        if not chosen or wrong:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(map(str, choices))}")
        return chosen

    return parse


def base_parser(
    name: str, description: str, *, workers: int | None = None
) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark has; ``--workers`` too, with this
    default, unless ``workers`` is None."""
    parser = argparse.ArgumentParser(
        prog=f"python -m mcpp.benchmarks.{name}", description=description
    )
    parser.add_argument("--repeat", type=int, default=3, metavar="R", help="repetitions (3)")
    parser.add_argument("--json", action="store_true", help="print the JSON document")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: finish in seconds")
    modes = comma_list(choices=MODES)
    parser.add_argument("--modes", type=modes, default=list(MODES), help="actor modes (both)")
    parser.add_argument(
        "--timeout", type=float, default=600.0, metavar="S", help="limit of one run (600 s)"
    )
    if workers is not None:
        parser.add_argument(
            "--workers", type=int, default=workers, help=f"workers / max_concurrent ({workers})"
        )
    return parser


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
    """An event hook (``on_event``) that times a run in-run, without the actor tree's start
    and stop: from the earliest ``StepStarted.at`` (stamped by the worker; the first one the
    supervisor *sees* may come after many steps, events travel in batches) to the moment the
    supervisor sees ``RunFinished``. Read :attr:`seconds` after the run."""

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


class Runs(NamedTuple, Generic[T]):
    """What one workload measured on mcpp and on the baseline, a repetition each (the
    :class:`Timing` s of :func:`compare`, or a benchmark's own measurements)."""

    mcpp: list[T]
    baseline: list[T]

    def figure(self, unit: str, value: Callable[[T], float], **options: Any) -> Figure:
        """The :func:`figure` of ``value(repetition)`` on both systems."""
        return figure(unit, [*map(value, self.mcpp)], [*map(value, self.baseline)], **options)


def compare(
    args: argparse.Namespace,
    mode: ActorMode,
    named: Mapping[str, tuple[Sequence[Task], int]],
    *,
    journal: bool = False,
) -> dict[str, Runs[Timing]]:
    """Time each workload (``name -> (tasks, workers)``) on mcpp in ``mode`` and on the
    baseline with as many workers, ``args.repeat`` times, the two systems taking turns."""
    mine: dict[str, list[Timing]] = {name: [] for name in named}
    base: dict[str, list[Timing]] = {name: [] for name in named}
    for _ in range(args.repeat):
        for name, (tasks, workers) in named.items():
            spec = to_spec(tasks, name="bench", mode=mode, workers=workers, max_concurrent=workers)
            clock = Span()
            _, wall = run_mcpp(spec, timeout=args.timeout, on_event=clock, journal=journal)
            mine[name].append(Timing(wall, clock.seconds))
            base[name].append(span_baseline(tasks, workers))
    return {name: Runs(mine[name], base[name]) for name in named}


def finish(name: str, args: argparse.Namespace, figures: Figures, notes: Any, **extra: Any) -> int:
    """Print the document of benchmark ``name`` (:func:`~mcpp.benchmarks.document.output`);
    return the exit code, 0."""
    output(document(name, args, figures, notes, **extra), args.json)
    return 0


def warm_up(args: argparse.Namespace) -> None:
    """Run one no-op task on the baseline (starts its forkserver) and, unless ``--smoke``, on
    mcpp (imports, file cache), unmeasured."""
    one = chain(1)
    if not args.smoke:
        run_mcpp(to_spec(one, name="warm-up", mode="per_step"), timeout=args.timeout)
    span_baseline(one, 1)


def run_dag(submit: Submit, tasks: Sequence[Task]) -> dict[str, Any]:
    """Run ``tasks`` through ``submit``, each as soon as its dependencies are done (a
    :class:`graphlib.TopologicalSorter`), its upstream results as keyword arguments named by
    the upstream task id. Returns every task's result; a task that raises makes this raise."""
    by_id = {t.id: t for t in tasks}
    order = graphlib.TopologicalSorter({t.id: t.deps for t in tasks})
    order.prepare()
    results: dict[str, Any] = {}
    finished: queue.SimpleQueue[tuple[str, cf.Future[Any]]] = queue.SimpleQueue()
    while order.is_active():
        for task_id in order.get_ready():
            task = by_id[task_id]
            future = submit(task.fn, {**task.args, **{d: results[d] for d in task.deps}})
            future.add_done_callback(partial(lambda i, done: finished.put((i, done)), task_id))
        task_id, future = finished.get()
        results[task_id] = future.result()
        order.done(task_id)
    return results


@contextmanager
def open_baseline(workers: int) -> Iterator[Submit]:
    """Yield ``submit`` of a new ProcessPoolExecutor with ``workers`` processes.

    'forkserver', not 'fork' (this process has threads), preloading :mod:`workloads` as a
    real user's pool would."""
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
