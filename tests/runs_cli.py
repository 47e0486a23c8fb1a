"""The harness of the run-management CLI tests (tests/cli/test_runs.py,
tests/supervisor/test_resume.py): a step module a test can edit, workflow files beside it, and
``python -m mcpp.supervisor ...`` run as a user would, in a :class:`tests.world.World`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tests.world import World, cli_env

__all__ = [
    "BIG",
    "STEPS",
    "document",
    "env",
    "journal_bytes",
    "journal_rows",
    "mcpp",
    "ran",
    "steps_module",
    "workflow",
]

BIG = 50 * 1024 * 1024

STEPS = """
import os, time
from pathlib import Path

HERE = Path(__file__).parent

def count(name):
    with open(HERE / f"ran-{name}", "a") as log:
        log.write(f"{os.getpid()}\\n")

def first(delay=0.0):
    count("first")
    time.sleep(delay)
    return 1

def second(first, ok=False):
    count("second")
    print(f"second ok={ok}")
    if not ok:
        raise ValueError("not ok yet: set ok = true")
    return first + 1

def third(second, delay=0.0):
    count("third")
    time.sleep(delay)
    return second + 1

def lone():
    count("lone")
    if (HERE / "broken").exists():
        raise RuntimeError("lone is broken")
    return "lone"

def wait_for_go(first):
    count("wait")
    while (HERE / "hold").exists():
        time.sleep(0.02)
    return "went"

def big(size):
    count("big")
    return b"x" * size

def medium(size, tag=0):
    count("medium")
    return "m" * size
"""


def steps_module(world: World, source: str = STEPS) -> Path:
    """Write the step module ``wfsteps`` beside the workflow files (their folder is imported)."""
    path = world.workdir / "wfsteps.py"
    path.write_text(textwrap.dedent(source))
    return path


def workflow(world: World, body: str, name: str = "wf.toml") -> Path:
    path = world.workdir / name
    path.write_text('[workflow]\nname = "runs"\n' + textwrap.dedent(body))
    return path


def env(world: World, **extra: str) -> dict[str, str]:
    environment = cli_env(world)
    environment["PYTHONDONTWRITEBYTECODE"] = "1"  # an edited step module is read afresh
    environment.update(extra)
    return environment


def mcpp(
    world: World, *args: str, timeout: float = 120, **popen: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mcpp.supervisor ARGS`` to its end, as a user would."""
    environment = popen.pop("env", None) or env(world)
    proc = world.spawn(
        [sys.executable, "-m", "mcpp.supervisor", *args],
        cwd=popen.pop("cwd", world.cwd),
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def document(done: subprocess.CompletedProcess[str]) -> Any:
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise AssertionError(f"exit {done.returncode}; stderr: {done.stderr[-3000:]}") from None


def ran(world: World) -> dict[str, int]:
    """How many times each step function ran (one line per execution)."""
    return {
        p.name[len("ran-") :]: len(p.read_text().splitlines()) for p in world.workdir.glob("ran-*")
    }


def journal_rows(home: Path, sql: str) -> list[Any]:
    """Rows of ``sql`` on the journal in ``home``, read-only (none while it has no tables)."""
    path = home / "journal.db"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute(sql).fetchall()
    except sqlite3.OperationalError:  # no tables yet
        return []
    finally:
        db.close()


def journal_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in home.glob("journal.db*") if p.name != "journal.db-shm")
