"""What every benchmark shares: workload shapes, the two runners, the figures, the document.

A workload is a DAG of :class:`Task` s naming functions of :mod:`mcpp.benchmarks.workloads`.
:func:`run_mcpp` runs it as a mcpp workflow (this process is the supervisor);
:func:`span_baseline` runs it on a stdlib ``ProcessPoolExecutor`` driven by a plain DAG loop
(:func:`run_dag`: submit each task when its dependencies are done, pass upstream results as
keyword arguments, exactly as mcpp does).

In-run timing (:class:`Span`, :func:`span_baseline`) leaves start-up and tear-down out: for mcpp
the clock runs from the first ``StepStarted`` of the run to ``RunFinished``; for the baseline,
on a pool whose workers are already started and warm, from the first submission to the last
result.

Each benchmark prints one :class:`Document`. Its ``figures`` are a tree (mode, shape, ...) whose
leaves are :class:`Figure` s: mcpp's and the baseline's :class:`Stats` over the repetitions,
their ratio (median mcpp / median baseline), the issue's :class:`Target` for mcpp's median (None
where the issue sets none) and whether the median meets it.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import importlib.metadata
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
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeAlias

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
    "Document",
    "Figure",
    "Figures",
    "Machine",
    "Span",
    "Stats",
    "Submit",
    "Target",
    "Task",
    "Timing",
    "base_parser",
    "chain",
    "descendants",
    "document",
    "emit",
    "fanout",
    "figure",
    "layered",
    "leaves",
    "open_baseline",
    "output",
    "quantity",
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
PACKAGES = ("mcpp", "trio", "msgspec", "psutil")
BASELINE = "concurrent.futures.ProcessPoolExecutor ('forkserver') + a plain DAG loop"

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


# --- figures and the document ----------------------------------------------------------------


class Stats(msgspec.Struct, frozen=True):
    """The minimum, median and maximum of ``n`` repetitions (6 significant digits)."""

    min: float
    median: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        """The stats of ``values``. Raises ValueError if there are none."""
        if not values:
            raise ValueError("no values to summarise")
        low, mid, high = (float(f"{f(values):.6g}") for f in (min, statistics.median, max))
        return cls(low, mid, high, len(values))


class Target(msgspec.Struct, frozen=True):
    """A target of the issue for a figure's median: ``median op value``."""

    op: Literal[">=", "<=", "<"]
    value: float

    def __post_init__(self) -> None:
        if self.op not in (">=", "<=", "<"):
            raise ValueError(f"unknown target operator {self.op!r}")

    def met(self, median: float) -> bool:
        """Whether ``median`` meets the target."""
        if self.op == ">=":
            return median >= self.value
        return median <= self.value if self.op == "<=" else median < self.value


class Figure(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One measured figure; ``steps`` and ``target_steps`` only where they say something."""

    unit: str
    mcpp: Stats
    baseline: Stats | None
    ratio: float | None
    target: Target | None
    meets_target: bool | None
    steps: int | None = None
    target_steps: int | None = None


def figure(
    unit: str,
    mcpp: Sequence[float],
    baseline: Sequence[float] | None,
    *,
    target: Target | None = None,
    steps: int | None = None,
    target_steps: int | None = None,
) -> Figure:
    """The figure of ``mcpp``'s and ``baseline``'s values (None: the baseline has no
    counterpart); ratio of the medians, and whether mcpp's median meets ``target``."""
    mine = Stats.of(mcpp)
    base = Stats.of(baseline) if baseline else None
    ratio = float(f"{mine.median / base.median:.4g}") if base and base.median else None
    return Figure(
        unit=unit,
        mcpp=mine,
        baseline=base,
        ratio=ratio,
        target=target,
        meets_target=None if target is None else target.met(mine.median),
        steps=steps,
        target_steps=target_steps,
    )


# A tree of figures: names (a mode, a shape, ...) down to Figure leaves. msgspec decodes no
# union of a Struct and a dict, so a decoded document holds plain dicts: see :func:`leaves`.
Figures: TypeAlias = dict[str, Any]


def leaves(figures: Mapping[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[str, Figure]]:
    """Yield ``("a/b/c", figure)`` for every figure of a tree, decoded or not, in order."""
    for key, node in figures.items():
        if isinstance(node, Figure) or "unit" in node:
            yield "/".join((*path, key)), msgspec.convert(node, Figure, from_attributes=True)
        else:
            yield from leaves(node, (*path, key))


class Machine(msgspec.Struct, frozen=True):
    """Where a benchmark ran: CPUs, load, Python, platform, versions of mcpp and its runtime."""

    cpu_count: int | None
    load_average: list[float]
    python: str
    implementation: str
    platform: str
    packages: dict[str, str | None]

    @classmethod
    def here(cls) -> Machine:
        """This machine, now."""
        versions: dict[str, str | None] = {}
        for name in PACKAGES:
            try:
                versions[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                versions[name] = None
        return cls(
            cpu_count=os.cpu_count(),
            load_average=[round(x, 2) for x in os.getloadavg()],
            python=platform.python_version(),
            implementation=platform.python_implementation(),
            platform=platform.platform(),
            packages=versions,
        )


class Document(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a benchmark prints: its parameters, the machine, the figures and their notes.

    ``iterations`` (scaling's calibrated loop) and ``python_floor_s`` (startup's bare
    interpreter) are set by one benchmark each.
    """

    benchmark: str
    parameters: dict[str, Any]
    machine: Machine
    baseline: str
    figures: Figures
    notes: dict[str, Any]
    iterations: int | None = None
    python_floor_s: Stats | None = None


def document(
    name: str, args: argparse.Namespace, figures: Figures, notes: Mapping[str, Any], **extra: Any
) -> Document:
    """The document of benchmark ``name`` run with ``args``."""
    return Document(
        benchmark=name,
        parameters={k: v for k, v in vars(args).items() if k != "json"},
        machine=Machine.here(),
        baseline=BASELINE,
        figures=figures,
        notes=dict(notes),
        **extra,
    )


def quantity(value: float, unit: str) -> str:
    """``value`` with its unit, to 3 significant digits (whole numbers from 1,000)."""
    text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{text}x" if unit == "x" else f"{text} {unit}".rstrip()


def emit(value: Any) -> None:
    """Print ``value`` as indented JSON on standard output."""
    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(value)) + b"\n")
    sys.stdout.flush()


def output(doc: Document, as_json: bool) -> None:
    """Print ``doc`` as JSON (``as_json``), else one line a figure and the notes."""
    if as_json:
        emit(doc)
        return
    for path, fig in leaves(doc.figures):
        line = f"{path}: mcpp {quantity(fig.mcpp.median, fig.unit)}"
        if fig.baseline is not None:
            ratio = "" if fig.ratio is None else f", ratio {fig.ratio:.3g}x"
            line += f", baseline {quantity(fig.baseline.median, fig.unit)}{ratio}"
        if fig.target is not None:
            want = f"{fig.target.op} {quantity(fig.target.value, fig.unit)}"
            line += f", target {want}: {'met' if fig.meets_target else 'NOT met'}"
        print(line)
    for key, note in doc.notes.items():
        print(f"- {key}: {note}")


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


def span_mcpp(
    spec: WorkflowSpec, *, timeout: float, journal: bool = False
) -> tuple[RunResult, Timing]:
    """Run ``spec`` (see :func:`run_mcpp`); return its result and its :class:`Timing`."""
    clock = Span()
    result, wall = run_mcpp(spec, timeout=timeout, on_event=clock, journal=journal)
    return result, Timing(wall, clock.seconds)


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
