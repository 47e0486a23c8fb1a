"""The benchmarks run end to end with tiny sizes and print documents of the promised shape;
the README script renders them.

Nothing here asserts a time: the machine is shared. Each benchmark runs as its own process, as
a person would run it.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from argparse import Namespace
from concurrent.futures import Future
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest

from mcpp import protocol
from mcpp.benchmarks.all import Suite
from mcpp.benchmarks.common import Span, chain, fanout, layered, run_dag
from mcpp.benchmarks.document import Document, Stats, Target, document, figure, leaves
from mcpp.benchmarks.workloads import relay

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "benchmarks_readme.py"
MACHINE_PACKAGES = {"mcpp", "trio", "msgspec"}
# Figures that have no baseline counterpart by design.
NO_BASELINE = {"serial_s", "coordinator_mib", "helpers_mib"}


@pytest.fixture(scope="module")
def script() -> ModuleType:
    """``scripts/benchmarks_readme.py``, imported (it is no module of the package)."""
    spec = importlib.util.spec_from_file_location("benchmarks_readme", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run(*cmd: str) -> str:
    done = subprocess.run(
        [sys.executable, *cmd], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def run_benchmark(name: str, *options: str) -> tuple[dict[str, Any], Document]:
    """Run ``python -m mcpp.benchmarks.NAME --json --repeat 1 --smoke OPTIONS``; return the
    document as plain JSON and as a :class:`Document` (decoding checks every field's type)."""
    out = run("-m", f"mcpp.benchmarks.{name}", "--json", "--repeat", "1", "--smoke", *options)
    return json.loads(out), msgspec.json.decode(out, type=Document)


def check_document(raw: dict[str, Any], doc: Document, name: str, modes: set[str]) -> None:
    """Check the shape every document has: every figure's stats, ratio and target."""
    assert doc.benchmark == name
    assert doc.parameters["repeat"] == 1 and set(doc.parameters["modes"]) == modes
    assert doc.machine.cpu_count is not None and doc.machine.cpu_count >= 1
    assert all(doc.machine.packages[p] for p in MACHINE_PACKAGES)
    assert "ProcessPoolExecutor" in doc.baseline
    assert set(raw["figures"]) - {"serial_s", "cli"} == modes
    found = list(leaves(doc.figures))
    assert found
    for path, fig in found:
        assert fig.mcpp.min <= fig.mcpp.median <= fig.mcpp.max and fig.mcpp.n >= 1, path
        assert (fig.baseline is None) == (path.rsplit("/", 1)[-1] in NO_BASELINE), path
        no_ratio = fig.baseline is None or fig.baseline.median == 0
        assert (fig.ratio is None) == no_ratio, path
        assert (fig.target is None) == (fig.meets_target is None), path
    assert msgspec.json.decode(msgspec.json.encode(doc)) == raw, "nothing lost in decoding"


def test_dispatch_reports_in_run_rates_with_targets_in_both_modes(no_leftovers: None) -> None:
    raw, doc = run_benchmark("dispatch", "--modes", "pool,per_step")
    check_document(raw, doc, "dispatch", {"pool", "per_step"})
    per_step, pool = raw["figures"]["per_step"], raw["figures"]["pool"]
    assert doc.parameters["no_journal"] is False
    assert set(per_step) == {"fanout(3+join)", "chain(3)"}
    assert per_step["fanout(3+join)"]["steps_per_s"]["target"] == {"op": ">=", "value": 20.0}
    assert per_step["chain(3)"]["ms_per_hop"]["target"] is None
    assert set(pool) == {"fanout(3+join)", "chain(3)", "layered(2x2)"}
    assert set(pool["chain(3)"]) == {"wall_s", "ms_per_hop"}
    assert set(pool["layered(2x2)"]) == {"wall_s", "steps_per_s"}
    fan = pool["fanout(3+join)"]["steps_per_s"]
    assert fan["target"] == {"op": ">=", "value": 20_000.0} and fan["steps"] == 4
    whole = pool["fanout(3+join)"]["whole_run_steps_per_s"]
    assert whole["target"] == {"op": ">=", "value": 3_000.0} and whole["steps"] == 4
    assert "whole_run_steps_per_s" not in per_step["fanout(3+join)"]
    assert pool["chain(3)"]["ms_per_hop"]["target"] == {"op": "<=", "value": 0.2}
    assert pool["chain(3)"]["wall_s"]["target"] is None
    assert "steps" not in pool["chain(3)"]["wall_s"], "a figure without steps omits the key"


def test_scaling_reports_every_worker_count(no_leftovers: None) -> None:
    raw, doc = run_benchmark("scaling", "--modes", "pool", "--worker-counts", "1,2")
    check_document(raw, doc, "scaling", {"pool"})
    pool = raw["figures"]["pool"]
    assert raw["figures"]["serial_s"]["mcpp"]["median"] > 0
    assert doc.iterations is not None and doc.iterations > 0
    assert set(pool) == {"workers=1", "workers=2"}
    assert set(pool["workers=2"]) == {"wall_s", "span_s", "speedup"}
    assert pool["workers=2"]["speedup"]["target"] == {"op": ">=", "value": 1.9}
    assert pool["workers=1"]["speedup"]["target"] is None


def test_payload_reports_time_per_hop(no_leftovers: None) -> None:
    raw, doc = run_benchmark("payload", "--modes", "per_step")
    check_document(raw, doc, "payload", {"per_step"})
    assert set(raw["figures"]["per_step"]) == {"1MiB"}
    assert set(raw["figures"]["per_step"]["1MiB"]) == {"wall_s", "per_hop_ms", "extra_per_hop_ms"}


def test_memory_reports_every_process_and_growth(no_leftovers: None) -> None:
    raw, doc = run_benchmark("memory", "--modes", "pool")
    check_document(raw, doc, "memory", {"pool"})
    idle, leak = raw["figures"]["pool"]["idle"], raw["figures"]["pool"]["leak"]
    assert set(idle) == {
        "supervisor_mib", "coordinator_mib", "actor_mib", "helpers_mib", "total_mib",
        "total_pss_mib",
    }  # fmt: skip
    assert idle["total_mib"]["mcpp"]["min"] > idle["supervisor_mib"]["mcpp"]["max"]
    assert idle["helpers_mib"]["mcpp"]["min"] > 0  # the fork server counts in the total
    # PSS counts a page shared by several processes in shares, RSS once in each.
    assert 0 < idle["total_pss_mib"]["mcpp"]["max"] < idle["total_mib"]["mcpp"]["min"]
    assert idle["total_pss_mib"]["target"] == {"op": "<=", "value": 100.0}
    growth = leak["rss_growth_mib"]
    assert growth["steps"] == doc.notes["pool_leak_steps"] == doc.parameters["steps"]
    assert growth["target"] == {"op": "<", "value": 5.0} and growth["target_steps"] == 100_000
    assert set(leak) == {"rss_growth_mib", "rss_start_mib", "rss_end_mib"}


def test_startup_times_the_cli(no_leftovers: None) -> None:
    raw, doc = run_benchmark("startup", "--modes", "per_step")
    check_document(raw, doc, "startup", {"per_step"})
    assert set(raw["figures"]["per_step"]) == {"cli_one_step_s"}
    assert set(raw["figures"]["cli"]) == {"cli_help_s", "cli_status_s"}
    assert raw["figures"]["per_step"]["cli_one_step_s"]["target"] == {"op": "<=", "value": 0.5}
    assert raw["figures"]["cli"]["cli_status_s"]["target"] == {"op": "<=", "value": 0.2}
    assert doc.python_floor_s is not None and doc.python_floor_s.n == 1


@pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None,
    reason="Dask is not installed (uv sync --group bench, or the dev group's mcpp[dask])",
)
def test_peers_measures_every_workload_on_every_system(no_leftovers: None) -> None:
    raw, doc = run_benchmark("peers", "--modes", "pool")
    check_document(raw, doc, "peers", {"pool"})
    pool = raw["figures"]["pool"]
    assert set(pool) == {
        "cold_start_s", "fanout(3+join)", "chain(3)", "layered(2x2)", "cpu(2x0.01s)", "idle",
    }  # fmt: skip
    assert set(pool["fanout(3+join)"]) == {"whole_run_steps_per_s", "in_run_steps_per_s"}
    assert set(pool["idle"]) == {"total_rss_mib", "total_pss_mib"}
    for path, fig in leaves(doc.figures):
        assert fig.peers is not None and fig.peers["dask"].n == 1, path
        assert fig.peers["dask"].median > 0, path
    ray = importlib.util.find_spec("ray") is not None
    assert ("ray" in doc.notes) is not ray, "a missing Ray is named in the notes"


def test_faults_are_detected_and_leave_no_process(no_leftovers: None) -> None:
    raw, doc = run_benchmark("faults", "--modes", "per_step")
    check_document(raw, doc, "faults", {"per_step"})
    per_step = raw["figures"]["per_step"]
    assert set(per_step) == {"raise", "timeout", "sigkill", "shell_timeout", "daemon"}
    assert [f["processes_left"]["mcpp"]["max"] for f in per_step.values()] == [0] * 5
    # A ProcessPoolExecutor leaves a step's daemon and a timed-out step's child behind.
    left = {name: f["processes_left"]["baseline"]["min"] for name, f in per_step.items()}
    assert left == {"raise": 0, "timeout": 0, "sigkill": 0, "shell_timeout": 1, "daemon": 1}


def test_a_benchmark_without_json_prints_a_line_a_figure(no_leftovers: None) -> None:
    out = run("-m", "mcpp.benchmarks.startup", "--smoke", "--repeat", "1", "--modes", "pool")
    assert out.startswith("pool/cli_one_step_s: mcpp ") and ", baseline " in out
    assert "- cold: a new interpreter" in out


def test_all_prints_json_and_the_script_writes_it_into_the_readme(
    tmp_path: Path, script: ModuleType, no_leftovers: None
) -> None:
    saved, table, readme = tmp_path / "run.json", tmp_path / "t.md", tmp_path / "README.md"
    saved.write_text(
        run("-m", "mcpp.benchmarks.all", "--smoke", "--only", "startup", "--modes", "per_step")
    )
    suite = msgspec.json.decode(saved.read_bytes(), type=Suite)
    assert [d.benchmark for d in suite.documents] == ["startup"] and set(suite.elapsed_s) == {
        "startup"
    }
    before, after = "# x\n\n## Benchmarks\n\n", "\n## Development\n\nkept\n"
    readme.write_text(f"{before}{script.BEGIN}\nold table\n{script.END}\n{after}")
    out = run(str(SCRIPT), "--from", str(saved), "--markdown", str(table), str(readme))
    assert table.read_text() == out
    assert "| startup | per_step / cli_one_step_s |" in out
    assert f"`uv run python scripts/benchmarks_readme.py --from {saved}" in out
    assert "| no-op fan-out (pool), steps/s | - | - | 2,100 steps/s | 1,100 steps/s |  |" in out
    assert readme.read_text() == f"{before}{script.BEGIN}\n{out}{script.END}\n{after}"


def test_readme_section_needs_both_markers_once_in_order(script: ModuleType) -> None:
    begin, end = script.BEGIN, script.END
    assert script.replace_section(f"a\n{begin}\nb\n{end}\nc", "new") == f"a\n{begin}\nnew\n{end}\nc"
    for bad in (f"{begin}\n", f"{end}\n{begin}\n", f"{begin}\n{begin}\n{end}\n"):
        with pytest.raises(ValueError):
            script.replace_section(bad, "new")


def test_markdown_shows_the_target_and_whether_it_is_met(script: ModuleType) -> None:
    fast = figure("steps/s", [30_000.0], [10_000.0], target=Target(">=", 20_000.0))
    slow = figure("ms", [0.5], [0.2], target=Target("<=", 0.2))
    figures = {"fast": fast, "slow": slow, "deep": {"none": figure("s", [1], [1])}}
    table = script.markdown([document("x", Namespace(), figures, {})])
    assert "| x | fast | 30,000 steps/s | 10,000 steps/s | 3x | >= 20,000 steps/s | yes |" in table
    assert "| x | slow | 0.5 ms | 0.2 ms | 2.5x | <= 0.2 ms | **no** |" in table
    assert "| x | deep / none | 1 s | 1 s | 1x |  |  |" in table


def test_the_peer_comparison_takes_mcpp_and_baseline_from_the_run(script: ModuleType) -> None:
    peers = msgspec.toml.decode(script.PEERS.read_bytes(), type=script.Peers)
    fan = figure("steps/s", [25_000.0], [7_000.0])
    figures = {"pool": {"fanout(1000+join)": {"steps_per_s": fan}}}
    docs = [document("dispatch", Namespace(), figures, {})]
    lines = script.comparison(docs, peers).splitlines()
    assert len(lines) == 2 + len(peers.workload) == 7
    row = next(line for line in lines if line.startswith("| no-op fan-out"))
    cells = "25,000 steps/s | 7,000 steps/s | 2,100 steps/s | 1,100 steps/s |  |"
    assert row == f"| no-op fan-out (pool), steps/s | {cells}"
    chain_row = next(line for line in lines if line.startswith("| chain"))
    assert "| - | - |" in chain_row, "a figure the run lacks is a dash, never a number"


def test_a_run_with_peers_renders_the_measured_comparison(script: ModuleType) -> None:
    cold = msgspec.structs.replace(
        figure("s", [0.4], [0.1]), peers={"dask": Stats(2.0, 2.5, 3.0, 3)}
    )
    idle = figure("MiB", [90.0], [30.0])  # no peer measured it: a dash
    figures = {"pool": {"cold_start_s": cold, "idle": {"total_pss_mib": idle}}}
    doc = document("peers", Namespace(), figures, {"ray": "not importable here: skipped"})
    table = script.measured(doc).splitlines()
    assert table[0] == "| workload | mcpp | stdlib baseline | Dask distributed (this run) |"
    assert table[2] == "| cold start s | 0.4 s | 0.1 s | 2.5 s |"
    assert table[3] == "| idle, total pss mib | 90 MiB | 30 MiB | - |"
    assert table[-1] == "ray: not importable here: skipped"


def test_run_dag_passes_upstream_results_in_dependency_order() -> None:
    with_relays = [*chain(1), *(t._replace(fn=relay) for t in chain(3)[1:])]

    def submit(fn: Any, kwargs: dict[str, Any]) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(**kwargs) if fn is relay else 7)
        return future

    assert run_dag(submit, with_relays) == {"t0": 7, "t1": 7, "t2": 7}
    assert len(fanout(4)) == 5 and fanout(4)[-1].deps == ("t0", "t1", "t2", "t3")
    assert len(layered(3, 4)) == 12 and layered(3, 4)[5].deps == ("l0_1", "l0_2")
    assert layered(3, 1)[1].deps == ("l0_0",)


def test_figure_ratio_is_median_over_median_and_the_target_judges_the_median() -> None:
    fig = figure("s", [1.0, 2.0, 9.0], [1.0, 1.0, 1.0])
    assert fig.mcpp == Stats(1.0, 2.0, 9.0, 3) and fig.ratio == 2.0
    assert fig.target is None and fig.meets_target is None
    assert figure("s", [1.0], None).ratio is None
    assert figure("s", [1.0], [0.0]).ratio is None
    assert figure("s", [1.0, 2.0, 9.0], None, target=Target("<=", 2.0)).meets_target is True
    assert figure("s", [1.0, 2.0, 9.0], None, target=Target("<", 2.0)).meets_target is False
    assert figure("x", [1.8, 1.9, 2.0], None, target=Target(">=", 1.9)).meets_target is True
    with pytest.raises(ValueError):
        Stats.of([])
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"op": ">", "value": 1.0}, Target)


def test_span_runs_from_the_earliest_step_start_to_run_finished() -> None:
    span = Span()
    for step, at in (("b", 5.0), ("a", 4.0), ("c", 6.0)):
        span(None, protocol.StepStarted(step=step, attempt=1, pid=1, at=at))  # type: ignore[arg-type]
    assert span.began == 4.0 and span.ended is None
    span(None, protocol.RunFinished(status="succeeded", duration_s=1.0))  # type: ignore[arg-type]
    assert span.ended is not None and span.seconds == span.ended - 4.0
