"""The benchmarks run end to end with tiny sizes and print documents of the promised shape.

Nothing here asserts a time: the machine is shared. Each benchmark runs as its own process, as
a person would run it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mcpp.benchmarks import report
from mcpp.benchmarks.common import chain, fanout, figure, layered, run_dag, stats
from mcpp.benchmarks.workloads import relay

MACHINE_PACKAGES = {"mcpp", "tractor", "trio", "msgspec"}
# Figures that have no baseline counterpart by design.
NO_BASELINE = {"serial_s", "coordinator_mib"}


def run_benchmark(name: str, *options: str) -> dict[str, Any]:
    """Run ``python -m mcpp.benchmarks.NAME --json --repeat 1 --smoke OPTIONS``; parse it."""
    cmd = [sys.executable, "-m", f"mcpp.benchmarks.{name}", "--json", "--repeat", "1"]
    done = subprocess.run(
        [*cmd, "--smoke", *options], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def figures_of(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Yield ``(path, figure)`` for every figure in a ``figures`` tree."""
    if isinstance(node, Mapping) and "unit" in node and "mcpp" in node:
        yield path, node
    elif isinstance(node, Mapping):
        for key, child in node.items():
            yield from figures_of(child, (*path, key))


def check_stats(value: Any) -> None:
    assert set(value) == {"min", "median", "max"}
    assert value["min"] <= value["median"] <= value["max"]


def check_document(doc: dict[str, Any], name: str, mode: str = "per_step") -> Any:
    """Check the common shape; return the figures of ``mode`` (None if it is unavailable)."""
    assert doc["benchmark"] == name
    assert doc["parameters"]["repeat"] == 1
    assert doc["machine"]["cpu_count"] >= 1
    assert set(doc["machine"]["packages"]) >= MACHINE_PACKAGES
    assert all(doc["machine"]["packages"][p] for p in MACHINE_PACKAGES)
    assert "ProcessPoolExecutor" in doc["baseline"]
    figures = doc["figures"]
    assert figures[mode] is not None or doc["notes"][f"{mode}_unavailable"]
    found = list(figures_of(figures))
    assert found
    for path, fig in found:
        check_stats(fig["mcpp"])
        if path[-1] in NO_BASELINE:
            continue
        check_stats(fig["baseline"])
        assert fig["ratio"] is None or isinstance(fig["ratio"], float)
    table = report.markdown([doc])
    assert table.count("\n") >= 2 + len(found)
    return figures[mode]


def test_dispatch_reports_three_shapes_and_startup_in_pool_mode(no_leftovers: None) -> None:
    # Per-step mode is covered by the other benchmarks; this one covers pool mode, or that
    # its absence is reported with a reason.
    doc = run_benchmark("dispatch", "--modes", "pool")
    pool = check_document(doc, "dispatch", mode="pool")
    if pool is not None:
        assert set(pool) == {"startup", "fanout(3+join)", "chain(3)", "layered(2x2)"}
        assert set(pool["chain(3)"]) == {"wall_s", "per_step_ms"}


def test_scaling_reports_every_worker_count(no_leftovers: None) -> None:
    doc = run_benchmark("scaling", "--modes", "per_step", "--max-workers", "2")
    per_step = check_document(doc, "scaling")
    assert set(per_step) == {"workers=1", "workers=2"}
    assert set(per_step["workers=2"]) == {"wall_s", "span_s", "speedup"}
    assert doc["figures"]["serial_s"]["mcpp"]["median"] > 0
    assert doc["iterations"] > 0


def test_payload_reports_time_per_hop(no_leftovers: None) -> None:
    doc = run_benchmark("payload", "--modes", "per_step")
    per_step = check_document(doc, "payload")
    assert set(per_step["1MiB"]) == {"wall_s", "per_hop_ms", "extra_per_hop_ms"}


def test_memory_reports_every_process_and_growth(no_leftovers: None) -> None:
    doc = run_benchmark("memory", "--modes", "per_step")
    per_step = check_document(doc, "memory")
    idle = per_step["idle"]
    assert set(idle) == {"supervisor_mib", "coordinator_mib", "actor_mib", "total_mib"}
    assert idle["total_mib"]["mcpp"]["min"] > idle["supervisor_mib"]["mcpp"]["max"]
    assert per_step["leak"]["growth_bytes_per_step"]["steps"] == doc["notes"]["per_step_leak_steps"]


def test_startup_times_the_cli(no_leftovers: None) -> None:
    doc = run_benchmark("startup", "--modes", "per_step")
    per_step = check_document(doc, "startup")
    assert set(per_step) == {"cli_one_step_s"}
    check_stats(doc["python_floor_s"])


def test_faults_are_detected_and_leave_no_process(no_leftovers: None) -> None:
    doc = run_benchmark("faults", "--modes", "per_step")
    per_step = check_document(doc, "faults")
    assert set(per_step) == {"raise", "timeout", "sigkill"}
    for fault in per_step.values():
        assert fault["processes_left"]["mcpp"]["max"] == 0
        assert fault["processes_left"]["baseline"]["max"] == 0


def test_all_writes_one_markdown_table(tmp_path: Path, no_leftovers: None) -> None:
    path = tmp_path / "table.md"
    cmd = [sys.executable, "-m", "mcpp.benchmarks.all", "--smoke", "--only", "startup"]
    done = subprocess.run(
        [*cmd, "--modes", "per_step", "--markdown", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert path.read_text() == done.stdout
    assert "| startup | per_step / cli_one_step_s |" in done.stdout


def test_run_dag_passes_upstream_results_in_dependency_order() -> None:
    with_relays = [*chain(1), *(t._replace(fn=relay) for t in chain(3)[1:])]
    submitted: list[str] = []

    def submit(fn: Any, kwargs: dict[str, Any]) -> Any:
        from concurrent.futures import Future

        future: Future[Any] = Future()
        submitted.append(fn.__name__)
        future.set_result(fn(**kwargs) if fn is relay else 7)
        return future

    assert run_dag(submit, with_relays) == {"t0": 7, "t1": 7, "t2": 7}
    assert len(fanout(4)) == 5 and fanout(4)[-1].deps == ("t0", "t1", "t2", "t3")
    assert len(layered(3, 4)) == 12 and layered(3, 1)[1].deps == ("l0_0",)


def test_figure_ratio_is_median_over_median() -> None:
    fig = figure("s", [1.0, 2.0, 9.0], [1.0, 1.0, 1.0])
    assert fig["ratio"] == 2.0
    assert figure("s", [1.0], None)["ratio"] is None
    assert stats([]) is None


def test_markdown_names_the_reason_a_mode_was_not_measured() -> None:
    doc = {"benchmark": "x", "figures": {"pool": None}, "notes": {"pool_unavailable": "why"}}
    assert "not measured: why" in report.markdown([doc])
