"""Shared fixtures: every test that starts processes must prove none outlives it."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.world import SHM, World, descendants


def wait_until_gone(find: object, timeout: float = 5.0) -> list[psutil.Process]:
    """Poll ``find()`` until it returns nothing or ``timeout`` passes; return what is left."""
    deadline = time.monotonic() + timeout
    left = find()  # type: ignore[operator]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = find()  # type: ignore[operator]
    return left  # type: ignore[no-any-return]


@pytest.fixture
def no_leftovers() -> Iterator[None]:
    """Fail the test if it leaves a descendant process alive or a new ``/dev/shm`` entry
    (a semaphore of a killed multiprocessing program, a spill folder), after a short grace."""
    shm_before = set(os.listdir(SHM)) if SHM.is_dir() else set()
    yield
    left = wait_until_gone(descendants)
    for proc in left:
        proc.kill()
    assert not left, f"processes left behind: {[p.cmdline() for p in left]}"
    if SHM.is_dir():
        shm = wait_until_gone(lambda: sorted(set(os.listdir(SHM)) - shm_before), timeout=3.0)
        assert not shm, f"/dev/shm entries left behind: {shm}"


@pytest.fixture(autouse=True)
def private_mcpp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test's runs keep their files (journal, step logs) in a home of its own, never in
    the ``.mcpp`` of the folder pytest runs in (a test may set MCPP_HOME itself)."""
    monkeypatch.setenv("MCPP_HOME", str(tmp_path / "mcpp-home"))


@pytest.fixture(scope="session", autouse=True)
def no_leftovers_after_session() -> Iterator[None]:
    """After the whole session: no tractor or mcpp process may be alive on the machine."""
    yield
    left = wait_until_gone(descendants, timeout=10.0)
    for proc in left:
        proc.kill()
    assert not left, f"the test session left processes alive: {[p.cmdline() for p in left]}"


def write_module(folder: Path, source: str, prefix: str = "steps") -> str:
    """Write ``source`` as a module in ``folder`` under a name unique to the test; return it."""
    name = f"{prefix}_{uuid.uuid4().hex}"
    (folder / f"{name}.py").write_text(source)
    return name


@pytest.fixture
def restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put ``sys.path`` back after the test (loading a workflow prepends its folders)."""
    monkeypatch.setattr(sys, "path", list(sys.path))


async def wait_for_text(path: Path) -> str:
    """Wait until ``path`` exists with some text (written by another process); return it."""
    import trio

    file = trio.Path(path)
    while not (await file.exists() and await file.read_text()):  # noqa: ASYNC110 (polls a file)
        await trio.sleep(0.02)
    return await file.read_text()


# --- the machine-level harness of the CLI tests (tests/world.py) -----------------------------

MODES = ["per_step", "pool"]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """An active World; on teardown the test's own processes are killed and nothing may be
    left (a test that failed early still gets its leftovers listed and killed)."""
    with World(tmp_path / "world") as w:
        yield w
        for proc in w._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        w.reap = True
        w.assert_clean(10)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """Each actor mode in turn."""
    return str(request.param)
