"""The CLI's details, driven as a user would (a subprocess ``python -m mcpp.supervisor``):
parameters keep their type, the run id is printed at the start and on interruption,
``--version``, a closed pipe ends quietly, ``--dir`` on spawn and graph, the events file."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from tests.world import World, cli_env, wait_for

CLI = [sys.executable, "-m", "mcpp.supervisor"]
STEPS = """
import os
import time

def kind(out, flag):
    return [type(out).__name__, out, type(flag).__name__]

def touch(path, rows):
    open(path, "w").close()
    return rows

def held(pid_file):
    with open(pid_file + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(pid_file + ".tmp", pid_file)
    time.sleep(60)
"""


def workflow(world: World, body: str, name: str = "wf.toml") -> Path:
    """Write the workflow file ``name`` under the world's folder, its step module (MOD) beside
    it (mcpp adds a workflow file's folder to the import path)."""
    path = world.workdir / name
    module = f"detail_steps_{uuid.uuid4().hex}"
    (path.parent / f"{module}.py").write_text(STEPS)
    path.write_text(textwrap.dedent(body).replace("MOD", module))
    return path


def run(
    world: World, *args: str, stdout: Any = subprocess.PIPE, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    proc = world.spawn(
        [*CLI, *args],
        cwd=world.cwd,
        env=cli_env(world),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


PARAMS = """
[workflow]
name = "params"
[params]
out = "out/report.md"
flag = false
rows = 10
[[steps]]
id = "kind"
run = "MOD:kind"
args = { out = "${out}", flag = "${flag}" }
"""


@pytest.mark.parametrize("text", ["2024", "true", "null"])
def test_a_string_parameter_stays_a_string_end_to_end(world: World, text: str) -> None:
    wf = workflow(world, PARAMS)
    events = world.workdir / "events.jsonl"
    done = run(
        world, "spawn", str(wf), "--json", "--no-journal", "--events", str(events),
        "--param", f"out={text}", "--param", "flag=true",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["steps"]["kind"]["result"] == ["str", text, "bool"]
    assert stat.S_IMODE(events.stat().st_mode) == 0o600  # it holds params and results


def test_a_mismatched_parameter_is_an_error_before_any_step_runs(world: World) -> None:
    marker = world.workdir / "ran"
    wf = workflow(
        world,
        f"""
        [workflow]
        name = "mismatch"
        [params]
        rows = 10
        [[steps]]
        id = "touch"
        run = "MOD:touch"
        args = {{ path = "{marker}", rows = "${{rows}}" }}
        """,
    )
    done = run(world, "spawn", str(wf), "--param", "rows=ten")
    assert done.returncode == 2
    assert done.stderr == (
        f"mcpp: invalid workflow: {wf}: field 'params': parameter 'rows' must be an int "
        "(its default is 10), got 'ten'\n"
    )
    assert done.stdout == "" and not marker.exists()


def test_the_run_id_is_printed_at_the_start_and_on_sigterm(world: World) -> None:
    pid_file = world.workdir / "held.pid"
    wf = workflow(
        world,
        f"""
        [workflow]
        name = "held"
        [[steps]]
        id = "held"
        run = "MOD:held"
        args = {{ pid_file = "{pid_file}" }}
        """,
    )
    err = world.workdir / "stderr"
    with err.open("w") as stderr:
        proc = world.spawn(
            [*CLI, "spawn", str(wf)],
            cwd=world.cwd,
            env=cli_env(world),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    first = wait_for(lambda: err.read_text().partition("\n")[0] or None, 60, "the first line")
    head = first.removeprefix("mcpp: run ")
    run_id = head.split()[0]
    assert first == f"mcpp: run {run_id} of 'held'; resume with: mcpp resume {run_id}"
    wait_for(lambda: pid_file.exists() or proc.poll() is not None, 60, "the step to start")
    assert proc.poll() is None, err.read_text()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    lines = err.read_text().splitlines()
    assert f"mcpp: run {run_id} interrupted; resume with: mcpp resume {run_id}" in lines
    shown = run(world, "status", run_id, "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["status"] == "cancelled"


def test_version_comes_from_the_package_metadata(world: World) -> None:
    done = run(world, "--version")
    assert done.returncode == 0 and done.stdout == f"mcpp {version('mcpp')}\n"


WORDS = """
[workflow]
name = "tiny"
[params]
rows = 3
[[steps]]
id = "touch"
run = "MOD:touch"
args = { path = "PATH", rows = "${rows}" }
"""


@pytest.mark.parametrize(
    "args",
    [["status"], ["spawn", "WF"], ["spawn", "--json", "WF"], ["graph", "WF"]],
    ids=["status", "spawn", "spawn-json", "graph"],
)
def test_a_closed_stdout_ends_quietly_and_the_run_still_finishes(
    world: World, args: list[str]
) -> None:
    marker = world.workdir / "ran"
    wf = workflow(world, WORDS.replace("PATH", str(marker)))
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first byte: as `| head -0`
    try:
        done = run(world, *[str(wf) if a == "WF" else a for a in args], stdout=write)
    finally:
        os.close(write)
    assert done.returncode == 141, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    if args[0] == "spawn":  # the run went on to its end: its step ran, the journal says so
        assert marker.exists()
        runs = json.loads(run(world, "status", "--json").stdout)["runs"]
        assert [r["status"] for r in runs] == ["succeeded"]


TEMPLATE = """
[workflow]
name = "tiny"
version = "1.2.0"
[params]
rows = 3
[[steps]]
id = "touch"
run = "MOD:touch"
args = { path = "PATH", rows = "${rows}" }
"""


def test_dir_names_the_template_folder_for_spawn_and_graph(world: World) -> None:
    folder = world.workdir / "my-templates"
    folder.mkdir()
    marker = world.workdir / "ran"
    wf = workflow(world, TEMPLATE.replace("PATH", str(marker)), name="my-templates/tiny.toml")
    assert wf.parent == folder
    done = run(
        world, "spawn", "tiny@1.2.0", "--dir", str(folder), "--json", "--no-journal",
        "--param", "rows=5",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["steps"]["touch"]["result"] == 5 and marker.exists()
    drawn = run(world, "graph", "tiny", "--dir", str(folder), "--format", "json")
    assert drawn.returncode == 0, drawn.stderr
    assert "touch" in json.dumps(json.loads(drawn.stdout))
    missing = run(world, "graph", "tiny")  # not in ./templates of the working directory
    assert missing.returncode == 2 and "tiny" in missing.stderr


def test_help_and_version_import_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from mcpp.cli.main import main\n"
        "for argv in (['--help'], ['--version'], ['spawn', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = {'trio', 'rich', 'msgspec', 'psutil', 're2', 'sqlite3', 'yaml'}\n"
        "loaded = {m.split('.')[0] for m in sys.modules} & heavy\n"
        "loaded |= {m for m in sys.modules if m.startswith(('mcpp.actors', 'mcpp.supervisor.r'))}\n"
        "print(sorted(loaded), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "usage: mcpp" in done.stdout and "--dir DIR" in done.stdout
    assert done.stderr == "[]\n"
