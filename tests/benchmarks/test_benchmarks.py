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

import pytest

from mcpp import protocol
from mcpp.benchmarks import report
from mcpp.benchmarks.all import BEGIN, END, replace_section
from mcpp.benchmarks.common import Span, chain, fanout, figure, goal, layered, run_dag, stats
from mcpp.benchmarks.workloads import relay

MACHINE_PACKAGES = {"mcpp", "trio", "msgspec"}
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
        assert (fig["target"] is None) == (fig["meets_target"] is None), path
        assert fig["meets_target"] in (None, True, False)
        if path[-1] in NO_BASELINE:
            continue
        check_stats(fig["baseline"])
        assert fig["ratio"] is None or isinstance(fig["ratio"], float)
    table = report.markdown([doc])
    assert table.count("\n") >= 2 + len(found)
    return figures[mode]


def test_dispatch_reports_in_run_rates_with_targets_in_both_modes(no_leftovers: None) -> None:
    doc = run_benchmark("dispatch", "--modes", "pool,per_step")
    pool = check_document(doc, "dispatch", mode="pool")
    per_step = check_document(doc, "dispatch", mode="per_step")
    assert doc["parameters"]["no_journal"] is False
    assert set(per_step) == {"fanout(3+join)", "chain(3)"}
    assert per_step["fanout(3+join)"]["steps_per_s"]["target"] == goal(">=", 20.0)
    assert per_step["chain(3)"]["ms_per_hop"]["target"] is None
    assert pool is not None, "pool mode runs on this machine"
    assert set(pool) == {"fanout(3+join)", "chain(3)", "layered(2x2)"}
    assert set(pool["chain(3)"]) == {"wall_s", "ms_per_hop"}
    assert set(pool["layered(2x2)"]) == {"wall_s", "steps_per_s"}
    fan = pool["fanout(3+join)"]["steps_per_s"]
    assert fan["target"] == goal(">=", 20_000.0) and fan["steps"] == 4
    assert pool["chain(3)"]["ms_per_hop"]["target"] == goal("<=", 0.2)
    assert pool["chain(3)"]["wall_s"]["target"] is None
    assert "| >= 20,000 steps/s |" in report.markdown([doc])


def test_scaling_reports_every_worker_count(no_leftovers: None) -> None:
    doc = run_benchmark("scaling", "--modes", "pool", "--worker-counts", "1,2")
    pool = check_document(doc, "scaling", mode="pool")
    assert doc["figures"]["serial_s"]["mcpp"]["median"] > 0
    assert doc["iterations"] > 0
    assert pool is not None, "pool mode runs on this machine"
    assert set(pool) == {"workers=1", "workers=2"}
    assert set(pool["workers=2"]) == {"wall_s", "span_s", "speedup"}
    assert pool["workers=2"]["speedup"]["target"] == goal(">=", 1.9)
    assert pool["workers=1"]["speedup"]["target"] is None


def test_payload_reports_time_per_hop(no_leftovers: None) -> None:
    doc = run_benchmark("payload", "--modes", "per_step")
    per_step = check_document(doc, "payload")
    assert set(per_step["1MiB"]) == {"wall_s", "per_hop_ms", "extra_per_hop_ms"}


def test_memory_reports_every_process_and_growth(no_leftovers: None) -> None:
    doc = run_benchmark("memory", "--modes", "pool")
    pool = check_document(doc, "memory", mode="pool")
    assert pool is not None, "pool mode runs on this machine"
    idle = pool["idle"]
    assert set(idle) == {"supervisor_mib", "coordinator_mib", "actor_mib", "total_mib"}
    assert idle["total_mib"]["mcpp"]["min"] > idle["supervisor_mib"]["mcpp"]["max"]
    growth = pool["leak"]["rss_growth_mib"]
    assert growth["steps"] == doc["notes"]["pool_leak_steps"] == doc["parameters"]["steps"]
    assert growth["target"] == goal("<", 5.0) and growth["target_steps"] == 100_000
    assert set(pool["leak"]) == {"rss_growth_mib", "rss_start_mib", "rss_end_mib"}


def test_startup_times_the_cli(no_leftovers: None) -> None:
    doc = run_benchmark("startup", "--modes", "per_step")
    per_step = check_document(doc, "startup")
    assert set(per_step) == {"cli_one_step_s"}
    check_stats(doc["python_floor_s"])


def test_faults_are_detected_and_leave_no_process(no_leftovers: None) -> None:
    doc = run_benchmark("faults", "--modes", "per_step")
    per_step = check_document(doc, "faults")
    assert set(per_step) == {"raise", "timeout", "sigkill", "shell_timeout", "daemon"}
    for fault in per_step.values():
        assert fault["processes_left"]["mcpp"]["max"] == 0
    # A ProcessPoolExecutor leaves a step's daemon and a timed-out step's child behind.
    for fault in ("raise", "timeout", "sigkill"):
        assert per_step[fault]["processes_left"]["baseline"]["max"] == 0
    for fault in ("shell_timeout", "daemon"):
        assert per_step[fault]["processes_left"]["baseline"]["min"] == 1


def test_all_writes_one_markdown_table_into_the_readme(tmp_path: Path, no_leftovers: None) -> None:
    path, readme = tmp_path / "table.md", tmp_path / "README.md"
    before, after = "# x\n\n## Benchmarks\n\n", "\n## Development\n\nkept\n"
    readme.write_text(f"{before}{BEGIN}\nold table\n{END}\n{after}")
    cmd = [sys.executable, "-m", "mcpp.benchmarks.all", "--smoke", "--only", "startup"]
    done = subprocess.run(
        [*cmd, "--modes", "per_step", "--markdown", str(path), "--readme", str(readme)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert path.read_text() == done.stdout
    assert "| startup | per_step / cli_one_step_s |" in done.stdout
    assert "`uv run python -m mcpp.benchmarks.all --smoke --only startup" in done.stdout
    assert readme.read_text() == f"{before}{BEGIN}\n{done.stdout}{END}\n{after}"


def test_readme_section_needs_both_markers_once_in_order() -> None:
    assert replace_section(f"a\n{BEGIN}\nb\n{END}\nc", "new") == f"a\n{BEGIN}\nnew\n{END}\nc"
    for bad in (f"{BEGIN}\n", f"{END}\n{BEGIN}\n", f"{BEGIN}\n{BEGIN}\n{END}\n"):
        with pytest.raises(ValueError):
            replace_section(bad, "new")


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


def test_figure_ratio_is_median_over_median_and_the_target_judges_the_median() -> None:
    fig = figure("s", [1.0, 2.0, 9.0], [1.0, 1.0, 1.0])
    assert fig["ratio"] == 2.0
    assert fig["target"] is None and fig["meets_target"] is None
    assert figure("s", [1.0], None)["ratio"] is None
    assert stats([]) is None
    assert figure("s", [1.0, 2.0, 9.0], None, target=goal("<=", 2.0))["meets_target"] is True
    assert figure("s", [1.0, 2.0, 9.0], None, target=goal("<", 2.0))["meets_target"] is False
    assert figure("x", [1.8, 1.9, 2.0], None, target=goal(">=", 1.9))["meets_target"] is True
    with pytest.raises(ValueError):
        goal(">", 1.0)


def test_span_runs_from_the_earliest_step_start_to_run_finished() -> None:
    span = Span()
    for step, at in (("b", 5.0), ("a", 4.0), ("c", 6.0)):
        span(None, protocol.StepStarted(step=step, attempt=1, pid=1, at=at))  # type: ignore[arg-type]
    assert span.began == 4.0 and span.ended is None
    span(None, protocol.RunFinished(status="succeeded", duration_s=1.0))  # type: ignore[arg-type]
    assert span.ended is not None and span.seconds == span.ended - 4.0


def test_markdown_names_the_reason_a_mode_was_not_measured() -> None:
    doc = {"benchmark": "x", "figures": {"pool": None}, "notes": {"pool_unavailable": "why"}}
    assert "not measured: why" in report.markdown([doc])


def test_markdown_shows_the_target_and_whether_it_is_met() -> None:
    fast = figure("steps/s", [30_000.0], [10_000.0], target=goal(">=", 20_000.0))
    slow = figure("ms", [0.5], [0.2], target=goal("<=", 0.2))
    doc = {"benchmark": "x", "figures": {"fast": fast, "slow": slow, "none": figure("s", [1], [1])}}
    table = report.markdown([doc])
    assert "| x | fast | 30,000 steps/s | 10,000 steps/s | 3x | >= 20,000 steps/s | yes |" in table
    assert "| x | slow | 0.5 ms | 0.2 ms | 2.5x | <= 0.2 ms | **no** |" in table
    assert "| x | none | 1 s | 1 s | 1x |  |  |" in table


def test_the_peer_comparison_takes_mcpp_and_baseline_from_the_run() -> None:
    from mcpp.benchmarks.peers import comparison

    figure = {"unit": "steps/s", "mcpp": {"median": 25_000.0}, "baseline": {"median": 7_000.0}}
    docs = [
        {
            "benchmark": "dispatch",
            "figures": {"pool": {"fanout(1000+join)": {"steps_per_s": figure}}},
        }
    ]
    table = comparison(docs)
    row = next(line for line in table.splitlines() if line.startswith("| no-op fan-out"))
    assert "25,000 steps/s" in row and "7,000 steps/s" in row and "2,100 steps/s" in row
    chain = next(line for line in table.splitlines() if line.startswith("| chain"))
    assert "| - | - |" in chain, "a figure the run lacks is a dash, never a number"
