"""The Python API speaks up: ``wf.run()`` prints a summary line (and on a terminal a live
view) on stderr, ``check=True`` and ``raise_for_status()`` raise RunFailed naming the failed
steps, and the missing ``__main__`` guard's message reaches the user. Each test runs a real
script in a subprocess, as a user would."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import mcpp
from mcpp.errors import MCPPError, RunFailed
from mcpp.protocol import ErrorInfo
from mcpp.supervisor.results import RunResult, StepResult

pytestmark = pytest.mark.usefixtures("no_leftovers")

SCRIPT = """
import sys
import mcpp

wf = mcpp.Workflow("speaks")

@wf.step()
def one() -> int:
    return 1

@wf.step(depends_on=[one])
def boom(one: int) -> int:
    raise ValueError("bad row 7")

@wf.step(depends_on=[boom])
def after(boom: int) -> int:
    return boom

"""


def write(tmp_path: Path, body: str, *, main: str) -> Path:
    path = tmp_path / "user_script.py"
    text = SCRIPT + body
    if main:
        text += 'if __name__ == "__main__":\n' + textwrap.indent(textwrap.dedent(main), "    ")
    path.write_text(text)
    return path


def run_script(path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MCPP_HOME": str(path.parent / "home")}
    return subprocess.run(
        [sys.executable, str(path)],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


SUMMARY = re.compile(
    r"mcpp: speaks: run [0-9a-f]{24} failed in \d+\.\d\d s \(1 failed, 1 skipped, 1 succeeded\); "
    r"step 'boom' failed: ValueError: bad row 7"
)


def test_run_prints_one_summary_line_with_the_failed_steps_error(tmp_path: Path) -> None:
    done = run_script(write(tmp_path, "", main="result = wf.run()\nprint(result.status)\n"))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "failed\n"
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and SUMMARY.fullmatch(lines[0]), done.stderr
    assert "\x1b" not in done.stderr  # not a terminal: no live view


def test_quiet_prints_nothing(tmp_path: Path) -> None:
    done = run_script(write(tmp_path, "", main="wf.run(quiet=True)\n"))
    assert done.returncode == 0 and done.stderr == ""


def test_check_raises_run_failed_naming_the_step(tmp_path: Path) -> None:
    main = """
    try:
        wf.run(check=True, quiet=True)
    except mcpp.RunFailed as exc:
        print(type(exc).__name__, exc.failed, exc.result.status)
        print(exc)
    """
    done = run_script(write(tmp_path, "", main=main))
    assert done.returncode == 0, done.stderr
    first, message = done.stdout.splitlines()
    assert first == "RunFailed ('boom',) failed"
    assert SUMMARY.fullmatch("mcpp: " + message)


def test_an_uncaught_run_failed_is_the_scripts_exit(tmp_path: Path) -> None:
    done = run_script(write(tmp_path, "", main="wf.run(check=True, quiet=True)\n"))
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith("mcpp.errors.RunFailed: speaks: run "), (
        done.stderr
    )
    assert "step 'boom' failed: ValueError: bad row 7" in done.stderr.splitlines()[-1]


def test_raise_for_status_is_silent_on_success_and_names_every_failure() -> None:
    ok = RunResult(
        run_id="r1",
        workflow="w",
        status="succeeded",
        duration_s=1.0,
        steps={"a": StepResult(status="succeeded")},  # type: ignore[arg-type]
    )
    ok.raise_for_status()
    bad = RunResult(
        run_id="r2",
        workflow="w",
        status="failed",
        duration_s=2.5,
        steps={
            "a": StepResult(status="failed", error=ErrorInfo(type="KeyError", message="'x'\n")),  # type: ignore[arg-type]
            "b": StepResult(status="timed_out", error=ErrorInfo(type="TimeoutError", message="t")),  # type: ignore[arg-type]
            "c": StepResult(status="skipped", skipped_because="a"),  # type: ignore[arg-type]
        },
    )
    with pytest.raises(RunFailed) as info:
        bad.raise_for_status()
    assert isinstance(info.value, MCPPError) and "RunFailed" in mcpp.__all__
    assert info.value.failed == ("a", "b") and info.value.result is bad
    assert str(info.value) == (
        "w: run r2 failed in 2.50 s (1 failed, 1 skipped, 1 timed_out); "
        "step 'a' failed: KeyError: 'x'; step 'b' timed_out: TimeoutError: t"
    )


def test_the_missing_guard_message_reaches_stderr_without_mcpps_frames(tmp_path: Path) -> None:
    path = tmp_path / "unguarded.py"
    path.write_text(
        textwrap.dedent(
            """
            import mcpp

            wf = mcpp.Workflow("noguard")

            @wf.step()
            def one() -> int:
                return 1

            result = wf.run()
            print(result.steps["one"].error.traceback)
            """
        )
    )
    done = run_script(path)
    assert done.returncode == 0, done.stderr
    summary = done.stderr.splitlines()[-1]
    assert summary.startswith("mcpp: noguard: run ") and "step 'one' failed" in summary
    assert 'put the code that runs the workflow under `if __name__ == "__main__":`' in summary
    traceback = done.stdout
    assert f'File "{path}", line 10, in <module>' in traceback
    mcpp_folder = str(Path(mcpp.__file__).parent)
    assert mcpp_folder not in traceback and "<frozen importlib" not in traceback


def read_pty(master: int, proc: subprocess.Popen[bytes], limit: float = 120.0) -> bytes:
    """Everything written to the pseudo-terminal until the process exits (bounded)."""
    data = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            data += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=10)
    return data


@pytest.mark.parametrize("progress", [True, False], ids=["progress", "progress=False"])
def test_a_terminal_gets_the_live_view_unless_turned_off(tmp_path: Path, progress: bool) -> None:
    path = write(tmp_path, "", main=f"wf.run(progress={progress})\n")
    master, slave = pty.openpty()
    env = {**os.environ, "MCPP_HOME": str(tmp_path / "home"), "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    try:
        proc = subprocess.Popen(
            [sys.executable, str(path)],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=slave,
        )
        os.close(slave)
        shown = read_pty(master, proc).decode(errors="replace")
    finally:
        os.close(master)
    assert proc.returncode == 0, shown
    hide_cursor = "\x1b[?25l"  # rich's live view hides the cursor while it draws
    assert (hide_cursor in shown) is progress, shown
    assert ("succeeded 1" in shown) is progress  # the live view's counts
    assert "mcpp: speaks: run " in shown and "step 'boom' failed: ValueError: bad row 7" in shown
