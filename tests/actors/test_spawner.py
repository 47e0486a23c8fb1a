"""mcpp.actors.spawner: the msgspec-only preloaded fork server, with real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import psutil
import pytest
import trio

from mcpp.actors.spawner import wire
from mcpp.actors.spawner.parent import (
    UNKNOWN_RETURNCODE,
    ForkedProcess,
    Spawner,
    SpawnerClosed,
    SpawnerError,
    SpawnError,
    open_spawner,
)
from mcpp.actors.spawner.server import PROTOCOL_ERROR_EXIT
from mcpp.actors.spawner.wire import HEADER, Exited, Frames, Ready, Spawn, Spawned, frame
from tests.world import descendants

ENTRIES = "tests.steps.spawner_entries"
PRELOAD = [ENTRIES]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def living_descendants() -> list[int]:
    return [proc.pid for proc in descendants()]


def poll_until(done: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture(autouse=True)
def orphans() -> Iterator[list[int]]:
    """Every test leaves no process: neither a descendant nor an orphan it put in the list.

    A child outliving its server re-parents away from this process (to init or the nearest
    subreaper), so tests name such pids here.
    """
    named: list[int] = []
    yield named

    def left() -> list[int]:
        return living_descendants() + [pid for pid in named if alive(pid)]

    poll_until(lambda: not left(), timeout=5.0)
    remaining = left()
    for pid in remaining:
        os.kill(pid, signal.SIGKILL)
    assert not remaining, f"processes left behind: {remaining}"


def job(path: Path, data: bytes) -> bytes:
    """A payload for ``write_payload`` (a ``Job`` struct is a msgpack map)."""
    return msgspec.msgpack.encode({"path": str(path), "data": data})


async def run(spawner: Spawner, entry: str, payload: bytes = b"") -> int:
    proc = await spawner.spawn(f"{ENTRIES}:{entry}", payload)
    with trio.fail_after(10):
        return await proc.wait()


# ------------------------------------------------------------------------------- through Spawner


async def test_child_writes_its_payload(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    data = bytes(range(256)) * 3
    async with open_spawner(PRELOAD) as spawner:
        proc = await spawner.spawn(f"{ENTRIES}:write_payload", job(target, data))
        assert proc.pid != spawner.pid
        with trio.fail_after(10):
            assert await proc.wait() == 0
        assert proc.poll() == 0
        assert proc.returncode == 0
    assert target.read_bytes() == data


async def test_exit_codes() -> None:
    async with open_spawner(PRELOAD) as spawner:
        assert await run(spawner, "return_three") == 3
        assert await run(spawner, "fail") == 1
        assert await run(spawner, "segfault") == -signal.SIGSEGV
        sleeper = await spawner.spawn(f"{ENTRIES}:sleep_forever", b"")
        assert sleeper.poll() is None
        sleeper.kill()
        with trio.fail_after(10):
            assert await sleeper.wait() == -signal.SIGKILL
        sleeper.kill()  # after its exit: nothing happens
        stopped = await spawner.spawn(f"{ENTRIES}:sleep_forever", b"")
        stopped.terminate()
        with trio.fail_after(10):
            assert await stopped.wait() == -signal.SIGTERM


async def test_sigint_is_for_the_children_not_the_server() -> None:
    """The server ignores Ctrl-C (EOF ends it); a child has Python's own SIGINT handler back."""
    async with open_spawner(PRELOAD) as spawner:
        proc = await spawner.spawn(f"{ENTRIES}:sleep_forever", b"")
        os.kill(spawner.pid, signal.SIGINT)
        with trio.fail_after(10):
            while proc.poll() is None:  # until the child has its handlers back (at once)
                proc.send_signal(signal.SIGINT)
                await trio.sleep(0.1)
        assert proc.returncode == 1  # KeyboardInterrupt: a traceback, then exit 1
        assert alive(spawner.pid)
        assert await run(spawner, "noop") == 0


async def test_twenty_concurrent_spawns() -> None:
    procs: list[ForkedProcess] = []

    async with open_spawner(PRELOAD) as spawner:

        async def five() -> None:
            for _ in range(5):
                procs.append(await spawner.spawn(f"{ENTRIES}:noop", b""))

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(five)
        assert len({proc.pid for proc in procs}) == 20
        with trio.fail_after(20):
            codes = [await proc.wait() for proc in procs]
    assert codes == [0] * 20


async def test_close_ends_the_server_and_leaves_nothing() -> None:
    spawner = await Spawner.start(PRELOAD)
    server = spawner.pid
    assert alive(server)
    assert await run(spawner, "noop") == 0
    await spawner.aclose()
    assert not psutil.pid_exists(server)  # exited and reaped
    assert living_descendants() == []
    with pytest.raises(SpawnerClosed):
        await spawner.spawn(f"{ENTRIES}:noop", b"")
    await spawner.aclose()  # again: nothing more


async def test_a_child_outlives_a_closed_spawner(orphans: list[int]) -> None:
    """Closing the spawner does not signal its children: they run until someone ends them."""
    async with open_spawner(PRELOAD) as spawner:
        server = spawner.pid
        proc = await spawner.spawn(f"{ENTRIES}:sleep_forever", b"")
        orphans.append(proc.pid)
    assert not psutil.pid_exists(server)
    await trio.sleep(0.2)
    assert alive(proc.pid)
    assert proc.poll() is None
    proc.kill()
    with trio.fail_after(10):
        # No server to report it: the status is known only if the orphan re-parented to this
        # process (a subreaper, as the test process is once a CLI run made it one).
        assert await proc.wait() in (-signal.SIGKILL, UNKNOWN_RETURNCODE)
    assert not alive(proc.pid)


async def test_a_killed_server_leaves_no_waiter_hanging(orphans: list[int]) -> None:
    async with open_spawner(PRELOAD) as spawner:
        proc = await spawner.spawn(f"{ENTRIES}:sleep_forever", b"")
        orphans.append(proc.pid)
        os.kill(spawner.pid, signal.SIGKILL)
        with pytest.raises(SpawnerClosed):
            await spawner.spawn(f"{ENTRIES}:noop", b"")
        assert proc.poll() is None
        proc.kill()
        with trio.fail_after(10):
            assert await proc.wait() in (-signal.SIGKILL, UNKNOWN_RETURNCODE)


async def test_a_bad_payload_fails_the_child_not_the_server() -> None:
    async with open_spawner(PRELOAD) as spawner:
        assert await run(spawner, "write_payload", b"\xc1 not msgpack") == 1
        assert await run(spawner, "write_payload", msgspec.msgpack.encode([1, 2])) == 1
        assert await run(spawner, "noop") == 0
        assert alive(spawner.pid)


async def test_bad_entries() -> None:
    async with open_spawner(PRELOAD) as spawner:
        for entry in ("no_colon", "mod:", ":fn", "a b:c", "mod:fn()"):
            with pytest.raises(SpawnError, match="not 'module:function'"):
                await spawner.spawn(entry, b"")
        assert await run(spawner, "no_such_function") == 1
        proc = await spawner.spawn("tests.steps.no_such_module:main", b"")
        with trio.fail_after(10):
            assert await proc.wait() == 1
        with pytest.raises(ValueError, match="at most"):
            await spawner.spawn(f"{ENTRIES}:noop", bytes(wire.MAX_FRAME))
        assert await run(spawner, "noop") == 0


async def test_a_cancelled_spawn_kills_its_child() -> None:
    async with open_spawner(PRELOAD) as spawner:
        with trio.CancelScope() as scope:
            scope.cancel()
            await spawner.spawn(f"{ENTRIES}:sleep_forever", b"")
        with trio.fail_after(10):
            while living_descendants() != [spawner.pid]:  # noqa: ASYNC110 (polls /proc)
                await trio.sleep(0.02)


async def test_a_failing_preload_fails_the_start() -> None:
    with pytest.raises(SpawnerError, match="no_such_module"):
        await Spawner.start(["tests.steps.no_such_module"])
    with pytest.raises(ValueError, match="not a module name"):
        await Spawner.start(["a,b"])


async def test_nothing_is_unpickled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "unpickled"
    monkeypatch.setenv("MCPP_TEST_PICKLE_MARKER", str(marker))
    async with open_spawner(PRELOAD) as spawner:
        assert await run(spawner, "write_payload", job(tmp_path / "x", b"data")) == 0
        assert await run(spawner, "return_three") == 3
        assert await run(spawner, "fail") == 1
        assert not marker.exists()
        # The guard is live in the server's image: a child that unpickles trips it.
        assert await run(spawner, "unpickle") == 1
    assert marker.exists()


# ----------------------------------------------------------------- a server started by hand


class RawServer:
    def __init__(self) -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        command = [sys.executable, "-m", "mcpp.actors.spawner", "--fd", str(theirs.fileno())]
        self.process = subprocess.Popen(
            [*command, "--preload", ENTRIES], pass_fds=[theirs.fileno()]
        )
        theirs.close()
        self.sock.settimeout(30)
        self.frames = Frames()
        self.pending: list[bytes] = []
        self.decoder: msgspec.msgpack.Decoder[wire.FromServer] = msgspec.msgpack.Decoder(
            wire.FromServer
        )

    def receive(self) -> wire.FromServer | None:
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.pending.extend(self.frames.feed(data))
        return self.decoder.decode(self.pending.pop(0))

    def close(self) -> None:
        self.sock.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture
def raw() -> Iterator[RawServer]:
    server = RawServer()
    yield server
    server.close()


def test_raw_round_trip(raw: RawServer) -> None:
    assert raw.receive() == Ready(raw.process.pid)
    raw.sock.sendall(frame(Spawn(7, f"{ENTRIES}:return_three", b"")))
    spawned = raw.receive()
    assert isinstance(spawned, Spawned)
    assert spawned.request_id == 7
    assert raw.receive() == Exited(spawned.pid, 3)
    raw.sock.shutdown(socket.SHUT_WR)
    assert raw.receive() is None  # EOF: the server exits
    assert raw.process.wait(timeout=10) == 0


@pytest.mark.parametrize(
    "garbage",
    [
        HEADER.pack(wire.MAX_FRAME + 1),
        b"\xff\xff\xff\xff",
        HEADER.pack(0),
        HEADER.pack(5) + b"hello",
        HEADER.pack(3) + b"\x93\x01\x02",
        frame(Spawned(1, 2)),  # a message the server does not take
        HEADER.pack(100) + b"partial",  # then EOF in the middle of the frame
    ],
)
def test_garbage_ends_the_server_not_its_children(
    raw: RawServer, garbage: bytes, orphans: list[int]
) -> None:
    assert isinstance(raw.receive(), Ready)
    raw.sock.sendall(frame(Spawn(1, f"{ENTRIES}:sleep_forever", b"")))
    spawned = raw.receive()
    assert isinstance(spawned, Spawned)
    orphans.append(spawned.pid)
    raw.sock.sendall(garbage)
    if garbage.endswith(b"partial"):
        raw.sock.shutdown(socket.SHUT_WR)
    assert raw.process.wait(timeout=10) == PROTOCOL_ERROR_EXIT
    assert raw.receive() is None
    assert alive(spawned.pid)
    os.kill(spawned.pid, signal.SIGKILL)
    assert poll_until(lambda: not alive(spawned.pid))


def test_a_dead_parent_ends_the_server(raw: RawServer) -> None:
    assert isinstance(raw.receive(), Ready)
    raw.sock.close()  # what the parent's death does to its end
    assert raw.process.wait(timeout=10) == 0
