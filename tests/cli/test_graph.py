"""``mcpp graph`` of a file, a template and a journalled run; ``--help`` of every command."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mcpp.cli.graph import render, step_states
from mcpp.cli.main import main, parser
from mcpp.dag import StepState
from mcpp.supervisor.results import StepResult
from mcpp.workflow.spec import StepSpec, WorkflowSpec
from tests.conftest import write_module

REPO = Path(__file__).resolve().parents[2]
FANOUT = REPO / "examples" / "fanout.toml"
EXAMPLES = REPO / "examples" / "templates"
FANOUT_EDGES = {
    ("split", "part_0"),
    ("split", "part_1"),
    ("split", "part_2"),
    ("part_0", "join"),
    ("part_1", "join"),
    ("part_2", "join"),
}


def command_names() -> list[list[str]]:
    """Every command and sub-command, as argv prefixes."""
    found: list[list[str]] = []

    def walk(p: object, prefix: list[str]) -> None:
        for action in getattr(p, "_actions", []):
            choices = getattr(action, "choices", None)
            if action.__class__.__name__ == "_SubParsersAction" and choices:
                for name, sub in choices.items():
                    found.append([*prefix, name])
                    walk(sub, [*prefix, name])

    walk(parser(), [])
    return found


def test_the_graph_and_templates_commands_are_registered() -> None:
    names = {tuple(n) for n in command_names()}
    assert {("graph",), ("templates",), ("templates", "ls"), ("templates", "show")} <= names
    assert ("spawn",) in names


@pytest.mark.parametrize("argv", [[], *command_names()], ids=lambda a: " ".join(a) or "mcpp")
def test_help_of_every_command_exits_0(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    assert "usage: mcpp" in capsys.readouterr().out


def test_spawn_help_names_events_and_templates(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["spawn", "--help"])
    out = capsys.readouterr().out
    assert "--events FILE" in out and "NAME[@V]" in out


def test_graph_json_parses_back(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(FANOUT), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [n["id"] for n in doc["nodes"]] == ["split", "part_0", "part_1", "part_2", "join"]
    assert all(n["state"] is None for n in doc["nodes"])
    assert {(e["from"], e["to"]) for e in doc["edges"]} == FANOUT_EDGES


def test_graph_dot_by_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(FANOUT)]) == 0  # dot is the default
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0] == 'digraph "fanout" {' and lines[-1] == "}"
    edges = {tuple(m) for m in re.findall(r'^\s*"(\w+)" -> "(\w+)";$', out, re.MULTILINE)}
    assert edges == FANOUT_EDGES
    assert out.count("{") == out.count("}")


def test_graph_mermaid_by_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(FANOUT), "--format", "mermaid"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0] == "flowchart LR"
    nodes = dict(re.findall(r'^\s+(s\d+)\["([^"]+)"\]$', out, re.MULTILINE))
    edges = re.findall(r"^\s+(s\d+) --> (s\d+)$", out, re.MULTILINE)
    assert sorted(nodes.values()) == sorted(["split", "part_0", "part_1", "part_2", "join"])
    assert {(nodes[a], nodes[b]) for a, b in edges} == FANOUT_EDGES
    assert len(lines) == 1 + len(nodes) + len(edges)  # no state classes for a file


def test_graph_of_a_template_with_params(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCPP_TEMPLATES", str(EXAMPLES))
    assert main(["graph", "report@1.0.0", "--param", "big_rows=2", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert ("big_load", "summarize") in {(e["from"], e["to"]) for e in doc["edges"]}
    assert main(["graph", "report"]) == 2
    assert "required parameter 'big_rows'" in capsys.readouterr().err


def test_graph_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["graph"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["graph", str(FANOUT), "--format", "png"])
    assert info.value.code == 2
    capsys.readouterr()
    assert main(["graph", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read the workflow file" in capsys.readouterr().err


def test_step_states_keep_every_status_timed_out_included() -> None:
    steps = {
        "a": StepResult(status=StepState.SUCCEEDED),
        "b": StepResult(status=StepState.TIMED_OUT),
        "c": StepResult(status=StepState.SKIPPED),
        "d": StepResult(status=StepState.PENDING),
    }
    assert step_states(steps) == {
        "a": StepState.SUCCEEDED,
        "b": StepState.TIMED_OUT,
        "c": StepState.SKIPPED,
        "d": StepState.PENDING,
    }
    dot = render(
        WorkflowSpec(name="w", steps=tuple(StepSpec(id=s, run="m:f") for s in steps)),
        "dot",
        step_states(steps),
    )
    assert '"b" [label="b\\ntimed_out", fillcolor="#eba0ac"];' in dot


def test_graph_of_an_unknown_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MCPP_HOME", str(tmp_path))
    assert main(["graph", "--run", "nosuchrun"]) == 2
    assert "nosuchrun" in capsys.readouterr().err


STEPS = """
def one():
    return 1

def boom(one):
    raise ValueError("boom")

def after(boom):
    return 0
"""


def test_graph_of_a_finished_run_colours_states(tmp_path: Path, no_leftovers: None) -> None:
    mod = write_module(tmp_path, STEPS, "gsteps")
    wf = tmp_path / "wf.toml"
    wf.write_text(
        textwrap.dedent(
            f"""
            [workflow]
            name = "colours"
            [[steps]]
            id = "one"
            run = "{mod}:one"
            [[steps]]
            id = "boom"
            run = "{mod}:boom"
            depends_on = ["one"]
            [[steps]]
            id = "after"
            run = "{mod}:after"
            depends_on = ["boom"]
            """
        )
    )
    env = {**os.environ, "MCPP_HOME": str(tmp_path / "home")}
    cli = [sys.executable, "-m", "mcpp.supervisor"]
    spawned = subprocess.run(
        [*cli, "spawn", str(wf), "--json"], env=env, capture_output=True, timeout=120
    )
    assert spawned.returncode == 1, spawned.stderr
    run_id = json.loads(spawned.stdout)["run_id"]

    def graph(fmt: str) -> str:
        done = subprocess.run(
            [*cli, "graph", "--run", run_id, "--format", fmt],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    doc = json.loads(graph("json"))
    states = {n["id"]: n["state"] for n in doc["nodes"]}
    assert states == {"one": "succeeded", "boom": "failed", "after": "skipped"}
    dot = graph("dot")
    assert re.search(r'"boom" \[label="boom\\nfailed", fillcolor="#[0-9a-f]{6}"\];', dot)
    mermaid = graph("mermaid")
    assert "classDef failed" in mermaid and "class s1 failed" in mermaid
