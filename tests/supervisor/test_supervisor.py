"""The supervisor as a user meets it: the CLI, signals, user scripts, concurrent runs, security."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import msgspec
import psutil
import pytest
import trio

import mcpp
from mcpp import protocol
from tests.conftest import wait_for_text, wait_until_gone

pytestmark = pytest.mark.usefixtures("no_leftovers")

ROOT = Path(__file__).resolve().parents[2]
STEPS = "tests.steps.runtime_steps"


def write_workflow(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


def cli(*args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MCPP_HOME": str(kwargs.pop("home"))} if "home" in kwargs else None
    return subprocess.Popen(
        [sys.executable, "-m", "mcpp.supervisor", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        **kwargs,
    )


def waiting_workflow(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A workflow whose `held` step writes its pid, then waits for a file that never comes."""
    pid_file, release = tmp_path / "pid", tmp_path / "release"
    wf = write_workflow(
        tmp_path / "wait.toml",
        f"""
        [workflow]
        name = "wait"
        [[steps]]
        id = "quick"
        run = "{STEPS}:number"
        args = {{ value = 1 }}
        [[steps]]
        id = "held"
        run = "{STEPS}:pid_then_wait"
        args = {{ pid_file = "{pid_file}", release = "{release}" }}
        depends_on = ["quick"]
        [[steps]]
        id = "after"
        run = "{STEPS}:add"
        depends_on = ["held"]
        """,
    )
    return wf, pid_file, release


def wait_for_file(path: Path, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def tree(pid: int) -> list[psutil.Process]:
    return [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    left = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(proc)
        except psutil.NoSuchProcess:
            pass
    return left


def test_spawn_prints_the_result_document_and_exits_0(tmp_path: Path) -> None:
    proc = cli("spawn", "examples/fanout.toml", "--json", "--param", "n=10", home=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    doc = json.loads(out)
    assert set(doc) == {"run_id", "workflow", "status", "duration_s", "steps", "resumed_at"}
    assert doc["status"] == "succeeded"
    assert doc["steps"]["join"]["result"]["total"] == sum(i * i for i in range(10))
    step = doc["steps"]["split"]
    assert set(step) >= {"status", "attempts", "duration_s", "result", "error", "skipped_because"}


def test_spawn_exits_1_when_a_step_fails(tmp_path: Path) -> None:
    wf = write_workflow(
        tmp_path / "bad.toml",
        f"""
        [workflow]
        name = "bad"
        [[steps]]
        id = "bad"
        run = "{STEPS}:fail"
        """,
    )
    proc = cli("spawn", str(wf), "--json", home=tmp_path)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert json.loads(out)["steps"]["bad"]["error"]["type"] == "ValueError"


def test_an_invalid_workflow_exits_2_naming_file_step_and_field(tmp_path: Path) -> None:
    wf = write_workflow(
        tmp_path / "typo.toml",
        f"""
        [workflow]
        name = "typo"
        [[steps]]
        id = "a"
        run = "{STEPS}:number"
        timeout = "soon"
        """,
    )
    proc = cli("spawn", str(wf), home=tmp_path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    message = err.decode()
    assert "typo.toml" in message and "'a'" in message and "timeout" in message


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_cancel_the_tree_and_exit_130(tmp_path: Path, signum: int) -> None:
    wf, pid_file, _ = waiting_workflow(tmp_path)
    proc = cli("spawn", str(wf), "--json", home=tmp_path)
    try:
        wait_for_file(pid_file)
        procs = tree(proc.pid)
        assert len(procs) >= 3, "supervisor, coordinator and the held step"
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err.decode()
    doc = json.loads(out)
    assert doc["status"] == "cancelled"
    assert doc["steps"]["held"]["status"] == "cancelled"
    assert doc["steps"]["quick"]["status"] == "succeeded"
    assert doc["steps"]["after"]["status"] in ("skipped", "cancelled")
    assert not wait_until_gone(lambda: alive(procs))


def test_sigkill_of_the_supervisor_leaves_no_process(tmp_path: Path) -> None:
    wf, pid_file, _ = waiting_workflow(tmp_path)
    proc = cli("spawn", str(wf), "--json", home=tmp_path)
    try:
        wait_for_file(pid_file)
        procs = tree(proc.pid)
        assert len(procs) >= 3
        proc.kill()
        proc.communicate(timeout=10)
        left = wait_until_gone(lambda: alive(procs), timeout=10)
    finally:
        proc.kill()
    for p in left:
        p.kill()
    assert not left, [p.cmdline() for p in left]


def test_two_runs_at_the_same_time_do_not_interfere(tmp_path: Path) -> None:
    runs = [
        cli("spawn", "examples/fanout.toml", "--json", "--param", f"n={n}", home=tmp_path / str(n))
        for n in (20, 30)
    ]
    docs = [json.loads(run.communicate(timeout=180)[0]) for run in runs]
    assert [run.returncode for run in runs] == [0, 0]
    totals = [doc["steps"]["join"]["result"]["total"] for doc in docs]
    assert totals == [sum(i * i for i in range(n)) for n in (20, 30)]
    assert docs[0]["run_id"] != docs[1]["run_id"]


def script(path: Path, guarded: bool) -> Path:
    body = """
        import mcpp

        wf = mcpp.Workflow("script")

        @wf.step()
        def one() -> int:
            return 1

        @wf.step(depends_on=[one])
        def two(one: int) -> int:
            return one + 1
        """
    run = "print(wf.run().to_json().decode())"
    if guarded:
        body += f'\n        if __name__ == "__main__":\n            {run}\n'
    else:
        body += f"\n        {run}\n"
    path.write_text(textwrap.dedent(body))
    return path


def test_steps_defined_in_a_users_script_run_in_step_processes(tmp_path: Path) -> None:
    path = script(tmp_path / "user.py", guarded=True)
    done = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()
    doc = json.loads(done.stdout)
    assert doc["status"] == "succeeded"
    assert doc["steps"]["two"]["result"] == 2


def test_a_script_without_the_main_guard_gets_a_message_naming_the_fix(tmp_path: Path) -> None:
    path = script(tmp_path / "unguarded.py", guarded=False)
    done = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, capture_output=True, timeout=120
    )
    doc = json.loads(done.stdout)
    assert doc["status"] == "failed"
    assert 'if __name__ == "__main__":' in doc["steps"]["one"]["error"]["message"]


def send_frame(sock: socket.socket, message: Any) -> None:
    data = msgspec.msgpack.encode(message)
    sock.sendall(struct.pack("<I", len(data)) + data)


def received_until_closed(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes (or resets) the connection."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:  # closed with our frames unread: a reset, not a FIN
        pass
    return data


def attack(port: int, side_effect: Path) -> bytes:
    """Speak tractor's wire protocol to a step actor without the run's key: a uid handshake,
    open `serve`, send a start whose step would create ``side_effect``. Return every byte the
    actor sent before it closed the connection."""
    start = protocol.StartStep(
        version=protocol.PROTOCOL_VERSION,
        run_id="x",
        step="intruder",
        attempt=1,
        target=f"{STEPS}:touch",
        kwargs=protocol.encode_value({"path": str(side_effect)}, step="intruder"),
        import_paths=(str(ROOT),),
    )
    uid = ["intruder", "0000"]
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        challenge = sock.recv(48)
        send_frame(sock, uid)
        send_frame(sock, {"cmd": ("mcpp.actors.step", "serve", {}, uid, "c1")})
        send_frame(sock, {"yield": protocol.encode(start), "cid": "c1"})
        return challenge + received_until_closed(sock)


async def test_a_peer_without_the_run_key_is_dropped_before_any_message(tmp_path: Path) -> None:
    pid_file, release, side_effect = tmp_path / "pid", tmp_path / "release", tmp_path / "pwned"
    wf = mcpp.Workflow("secure")
    wf.add_step(
        "held",
        f"{STEPS}:pid_then_wait",
        args={"pid_file": str(pid_file), "release": str(release)},
    )
    received: list[bytes] = []

    async def intrude() -> None:
        step = psutil.Process(int(await wait_for_text(pid_file)))
        ports = [c.laddr.port for c in step.net_connections("tcp") if c.status == "LISTEN"]
        assert ports, "the step actor listens on a port"
        listening = [c.laddr.ip for c in step.net_connections("tcp") if c.status == "LISTEN"]
        assert set(listening) == {"127.0.0.1"}, "actors listen on loopback only"
        received.append(await trio.to_thread.run_sync(attack, ports[0], side_effect))
        release.write_text("go")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(intrude)
        result = await wf.run_async()
    assert not side_effect.exists(), "code ran for a peer without the run's key"
    # All it got is the actor's challenge (a magic string and a nonce), then the close.
    assert received == [received[0]] and len(received[0]) == 48
    assert received[0].startswith(b"mcpp-actor-auth1")
    assert result.status == "succeeded"
    assert result.steps["held"].result == "released"


async def test_the_secret_is_on_no_command_line_and_in_no_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = b"known-key-" + b"x" * 30
    secret = key.decode()
    monkeypatch.setattr(protocol, "new_secret", lambda: key)
    pid_file, release = tmp_path / "pid", tmp_path / "release"
    wf = mcpp.Workflow("secret")
    wf.add_step(
        "held",
        f"{STEPS}:pid_then_wait",
        args={"pid_file": str(pid_file), "release": str(release)},
    )
    seen: list[str] = []

    async def inspect() -> None:
        await wait_for_text(pid_file)
        for proc in psutil.Process().children(recursive=True):
            seen.append(" ".join(proc.cmdline()) + json.dumps(proc.environ()))
        release.write_text("go")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(inspect)
        result = await wf.run_async()
    assert result.status == "succeeded", "the run used the patched secret"
    assert len(seen) >= 2, "the coordinator and the step were inspected"
    assert not [text for text in seen if secret in text]


async def test_an_api_run_with_journal_shows_in_status_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCPP_HOME", str(tmp_path))
    wf = mcpp.Workflow("journalled")
    wf.add_step("a", f"{STEPS}:number", args={"value": 3})
    result = await wf.run_async(journal=True)
    assert result.status == "succeeded"
    status = await trio.run_process(
        [sys.executable, "-m", "mcpp.supervisor", "status", result.run_id, "--json"],
        cwd=ROOT,
        capture_stdout=True,
    )
    assert json.loads(status.stdout)["steps"]["a"]["result"] == 3
    again = await mcpp.resume_async(result.run_id)
    assert again.run_id == result.run_id and again.steps["a"].result == 3


async def test_a_failing_coordinator_raises_one_run_error_naming_the_cause() -> None:
    from mcpp.supervisor.run import run_spec
    from mcpp.workflow.spec import StepSpec, WorkflowSpec

    # A spec that skipped validation: the coordinator itself fails on it.
    spec = WorkflowSpec(name="bad", steps=(StepSpec(id="a", run="x:y", depends_on=("zzz",)),))
    with pytest.raises(mcpp.RunError, match=r"coordinator failed.*unknown dependency 'zzz'"):
        await run_spec(spec)
