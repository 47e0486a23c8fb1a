"""The README shows what mcpp really prints.

Each ```` ```console ```` block right after a ``<!-- sample -->`` line holds ``$ COMMAND`` and
the output that follows it (standard output and standard error as a terminal interleaves
them). Each sample is run from the repository's root, as a user types it (``uv run mcpp ...``
runs as ``python -m mcpp.supervisor ...`` in this environment, ``uv run python`` as this
Python), with a fresh ``MCPP_HOME`` and an 80-column width; the output must match the README's,
run ids, times and durations aside, and the spacing that their widths change. A code block
right after ``<!-- file: PATH -->`` must be that file's text.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

SAMPLE = re.compile(
    r"^<!-- sample -->\n```console\n\$ (?P<command>[^\n]+)\n(?P<output>.*?)^```$", re.M | re.S
)
FILE = re.compile(r"^<!-- file: (?P<path>\S+) -->\n```\w*\n(?P<text>.*?)^```$", re.M | re.S)
RUN_ID = re.compile(r"\b[0-9a-f]{24}\b")
NUMBER = re.compile(r"\b\d+\.\d+\b")
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00)?")
RULES = re.compile(r"([━─])[━─]*")

SAMPLES = [(m["command"], m["output"]) for m in SAMPLE.finditer(README)]
FILES = [(m["path"], m["text"]) for m in FILE.finditer(README)]


def normalise(text: str) -> list[str]:
    """Lines with run ids, times and numbers replaced, spacing and table rules collapsed."""
    text = STAMP.sub("TIME", RUN_ID.sub("RUN_ID", text))
    text = RULES.sub(r"\1", NUMBER.sub("N.N", text))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return [line for line in lines if line]


def argv(command: str) -> list[str]:
    words = shlex.split(command)
    if words[:2] == ["uv", "run"]:
        words = words[2:]
    if words[:1] == ["mcpp"]:
        return [sys.executable, "-m", "mcpp.supervisor", *words[1:]]
    if words[:1] == ["python"]:
        return [sys.executable, *words[1:]]
    raise AssertionError(
        f"a README sample must start with `uv run mcpp` or `uv run python`: {command}"
    )


def test_the_readme_has_samples() -> None:
    commands = [command for command, _ in SAMPLES]
    assert len(commands) >= 4, commands
    assert any(c.startswith("uv run mcpp spawn") for c in commands)
    assert any(c.startswith("uv run python") for c in commands)


@pytest.mark.parametrize(("command", "shown"), SAMPLES, ids=[c for c, _ in SAMPLES])
def test_a_readme_sample_shows_what_the_command_prints(
    tmp_path: Path, command: str, shown: str, no_leftovers: None
) -> None:
    env = {**os.environ, "MCPP_HOME": str(tmp_path / "home"), "COLUMNS": "80"}
    for name in ("NO_COLOR", "FORCE_COLOR", "MCPP_TEMPLATES"):
        env.pop(name, None)
    done = subprocess.run(
        argv(command),
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    assert normalise(done.stdout) == normalise(shown), f"exit {done.returncode}:\n{done.stdout}"


@pytest.mark.parametrize(("path", "text"), FILES, ids=[p for p, _ in FILES])
def test_a_readme_file_block_is_the_file(path: str, text: str) -> None:
    assert (ROOT / path).read_text() == text
