"""The command line around the MCP server: ``mcpp mcp`` options, and the ``spawn`` options it
uses (``--run-id``, ``--params-json``), driven as subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys

from mcpp.supervisor.journal import Journal
from tests.mcp.client import mcp_env
from tests.world import ROOT, World


def mcpp(world: World, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = world.spawn(
        [sys.executable, "-m", "mcpp.supervisor", *args],
        cwd=ROOT,
        env=mcp_env(world),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_spawn_takes_a_run_id_and_json_typed_params(world: World) -> None:
    done = mcpp(
        world,
        "spawn",
        "--json",
        "--run-id",
        "chosen-id_1",
        "--params-json",
        '{"top": 1}',
        "examples/wordcount.toml",
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["run_id"] == "chosen-id_1" and len(doc["steps"]["reduce"]["result"]["top"]) == 1
    with Journal.open(world.home) as journal:
        assert journal.load("chosen-id_1").result.status == "succeeded"
    again = mcpp(world, "spawn", "--json", "--run-id", "chosen-id_1", "examples/wordcount.toml")
    assert again.returncode == 1 and "chosen-id_1" in again.stderr  # the journal refuses it


def test_spawn_refuses_a_bad_run_id_or_params_json(world: World) -> None:
    for bad in ("../up", "", "x" * 65, "a b"):
        done = mcpp(world, "spawn", "--run-id", bad, "examples/wordcount.toml")
        assert done.returncode == 2 and "a run id is 1-64 letters" in done.stderr, bad
    for bad, message in (("[1]", "must be a JSON object"), ("{", "--params-json")):
        done = mcpp(world, "spawn", "--params-json", bad, "examples/wordcount.toml")
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    done = mcpp(world, "spawn", "--params-json", '{"top": "many"}', "examples/wordcount.toml")
    assert done.returncode == 2 and "invalid workflow" in done.stderr and "params" in done.stderr


def test_mcp_refuses_a_remote_address_and_a_missing_root(world: World) -> None:
    done = mcpp(world, "mcp", "--http", "0.0.0.0:8000")
    assert done.returncode == 2 and "--allow-remote" in done.stderr
    done = mcpp(world, "mcp", "--root", str(world.workdir / "missing"))
    assert done.returncode == 2 and "not a folder" in done.stderr


def test_the_command_line_does_not_import_the_sdk_until_mcp_runs() -> None:
    probe = (
        "import sys, mcpp.cli.main; print(sorted({'mcp', 'pydantic', 'anyio'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
