"""Output capture in a step process (:mod:`mcpp.actors.capture`), in a real process of its own.

Each test runs a small script in a fresh interpreter that installs the capture (it takes over
descriptors 1 and 2 of its process, so not of pytest's), runs attempts, and reports the
stderr tails on the original standard error; the test then reads the logs it wrote.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mcpp.steplog import parse_line
from tests.world import ROOT

PRELUDE = """
import json, logging, os, subprocess, sys
import msgspec
from mcpp.actors.capture import OutputCapture
from mcpp.protocol import StartStep

def start(step, attempt, cap=None):
    return StartStep(version=2, run_id="r", step=step, attempt=attempt, target="m:f",
                     kwargs=msgspec.Raw(b"\\x80"), log_dir=sys.argv[1], log_cap=cap)

capture = OutputCapture()
tails = {}
"""


def run(tmp_path: Path, body: str) -> tuple[subprocess.CompletedProcess[str], dict[str, list[str]]]:
    """Run PRELUDE + ``body`` with the logs folder ``tmp_path/logs``; return the process and
    the tails it printed (``TAILS <json>`` on its original stderr)."""
    script = (
        PRELUDE
        + body
        + '\nos.write(capture.fallback, b"TAILS " + json.dumps(tails).encode() + b"\\n")\n'
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "logs")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    marker = [line for line in done.stderr.splitlines() if line.startswith("TAILS ")]
    return done, json.loads(marker[0][len("TAILS ") :])


def lines(path: Path) -> list[tuple[str, str | None, str]]:
    parsed = [parse_line(raw) for raw in path.read_bytes().split(b"\n") if raw]
    assert None not in parsed, path.read_bytes()[:500]
    return [(p[1], p[2], p[3]) for p in parsed if p is not None]


def test_partial_and_long_lines_records_and_output_between_attempts(tmp_path: Path) -> None:
    done, tails = run(
        tmp_path,
        """
capture.begin(start("a", 1))
sys.stdout.write("no line break at the end")
os.write(2, b"x" * (70 * 1024) + b"\\n")
try:
    raise ValueError("inner")
except ValueError:
    logging.getLogger("lib").error("it broke", exc_info=True)
subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('from a child\\\\n')"])
tails["a"] = list(capture.end())
print("between attempts")
os.write(1, b"fd 1 between attempts\\n")
logging.warning("a record between attempts")
capture.begin(start("b", 2))
tails["b"] = list(capture.end())
""",
    )
    assert done.stdout == ""  # what nothing captures goes to stderr, never to stdout
    for text in ("between attempts", "fd 1 between attempts", "WARNING: a record between"):
        assert text in done.stderr
    got = lines(tmp_path / "logs" / "a" / "1.log")
    assert got[0] == ("stderr", None, "x" * 64 * 1024)  # a line over 64 KiB is cut
    assert got[1] == ("stderr", None, "x" * 6 * 1024)
    assert got[2] == ("log", "ERROR", "lib: it broke")
    assert got[3][:2] == ("log", "ERROR") and got[3][2] == "Traceback (most recent call last):"
    assert got[-3] == ("log", "ERROR", "ValueError: inner")
    assert got[-2] == ("stderr", None, "from a child")
    assert got[-1] == ("stdout", None, "no line break at the end")  # kept at the end
    record = ["ERROR: lib: it broke"] + [text for _, _, text in got[3:-2]]  # joins the tail
    assert tails["a"] == (["x" * 64 * 1024, "x" * 6 * 1024, *record, "from a child"])[-20:]
    assert tails["b"] == []
    assert not (tmp_path / "logs" / "b").exists()  # an attempt that wrote nothing has no log


def test_the_cap_keeps_whole_lines_then_a_marker_and_the_tail_goes_on(tmp_path: Path) -> None:
    _done, tails = run(
        tmp_path,
        """
capture.begin(start("big", 1, cap=4096))
for i in range(500):
    print(f"line {i}", flush=True)
    print(f"err {i}", file=sys.stderr, flush=True)
tails["big"] = list(capture.end())
""",
    )
    log = tmp_path / "logs" / "big" / "1.log"
    assert 3500 < log.stat().st_size <= 4096 + 200
    got = lines(log)
    assert got[-1][:2] == ("log", "WARNING")
    assert got[-1][2].startswith("[mcpp] this attempt's log reached its cap of 4096 bytes")
    assert all(stream != "log" for stream, _, _ in got[:-1])
    assert tails["big"] == [f"err {i}" for i in range(480, 500)]  # kept past the cap
