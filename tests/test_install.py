"""mcpp installs with plain pip, as a user's own project would install it.

The wheel is built by ``uv build`` from this checkout, installed with pip into a fresh venv
(its dependencies come from the package index, as for any user), and runs the README's example
from a folder outside the checkout, so that nothing of the checkout can be imported instead.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UV = shutil.which("uv")


@pytest.mark.timeout(600)
@pytest.mark.skipif(UV is None, reason="uv builds the wheel (the README installs it first)")
def test_a_wheel_installs_with_pip_and_runs_the_example(tmp_path: Path, no_leftovers: None) -> None:
    assert UV is not None
    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "work"
    subprocess.run(
        [UV, "build", "--wheel", "--out-dir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("mcpp-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]

    work.mkdir()
    shutil.copytree(ROOT / "examples", work / "examples")
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import mcpp; print(mcpp.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(venv)), where.stdout
    done = subprocess.run(
        [str(venv / "bin" / "mcpp"), "spawn", "--json", "--no-journal", "examples/wordcount.toml"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    assert doc["status"] == "succeeded"
    assert doc["steps"]["reduce"]["result"]["words"] == 104
    freeze = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze"],
        capture_output=True,
        text=True,
        check=True,
    )
    installed = {line.split("==")[0].lower() for line in freeze.stdout.splitlines()}
    assert not {"tractor", "pdbpp"} & installed, freeze.stdout
