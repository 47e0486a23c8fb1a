"""The parent's side of the fork server: start it, ask it for children, watch them.

:func:`open_spawner` starts a server (``python -m mcpp.actors.spawner``) and returns a
:class:`Spawner` once it is ready; :meth:`Spawner.spawn` returns a :class:`ForkedProcess`, the
parent's handle of a child it did not fork itself.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from itertools import count

import msgspec
import psutil
import trio

from mcpp.actors.spawner.wire import (
    Exited,
    Frames,
    FromServer,
    Ready,
    Spawn,
    Spawned,
    SpawnFailed,
    StartFailed,
    frame,
)
from mcpp.errors import ProtocolError, RunError

__all__ = [
    "UNKNOWN_RETURNCODE",
    "ForkedProcess",
    "SpawnError",
    "Spawner",
    "SpawnerClosed",
    "SpawnerError",
    "open_spawner",
]

# Reported for a child whose exit the server could not report (it died first) and whose status
# this process cannot collect (the child is not its own): multiprocessing's choice as well.
UNKNOWN_RETURNCODE = 255


class SpawnerError(RunError):
    """The spawner cannot do what was asked."""


class SpawnerClosed(SpawnerError):
    """The spawner was closed, or its server exited."""


class SpawnError(SpawnerError):
    """The server refused or failed to fork a child (the message says why)."""


class ForkedProcess:
    """A child forked by the server, seen from the parent (not the child's parent).

    ``returncode`` comes from the server's :class:`Exited`. If the server dies first, the pid is
    watched (a pidfd): once it is gone, the real status if this process can collect it (the
    child re-parented to it as a subreaper), otherwise :data:`UNKNOWN_RETURNCODE`.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._exited = trio.Event()
        self._pidfd: int | None = None
        with suppress(OSError):  # gone already, or no pidfds here: psutil is used then
            self._pidfd = os.pidfd_open(pid)
        self._psutil: psutil.Process | None = None
        if self._pidfd is None:
            with suppress(psutil.Error):
                self._psutil = psutil.Process(pid)

    def __repr__(self) -> str:
        return f"<ForkedProcess pid={self.pid} returncode={self.returncode}>"

    def poll(self) -> int | None:
        """The return code, or None while it is not known."""
        return self.returncode

    async def wait(self) -> int:
        """Wait until the child has exited; return its return code (see the class)."""
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Signal the child (through its pidfd: never a recycled pid); nothing once it exited."""
        if self.returncode is not None:
            return
        with suppress(ProcessLookupError):
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, sig)
            else:
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def _set(self, returncode: int) -> None:
        if self.returncode is not None:
            return
        self.returncode = returncode
        if self._pidfd is not None:
            trio.lowlevel.notify_closing(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        self._exited.set()

    async def _watch(self) -> None:
        """Without the server: wait until the pid is gone, then set the return code."""
        code = UNKNOWN_RETURNCODE
        if self._pidfd is not None:
            await trio.lowlevel.wait_readable(self._pidfd)
            with suppress(ChildProcessError):
                info = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG)  # noqa: ASYNC222
                if info is not None:
                    dead = info.si_code in (os.CLD_KILLED, os.CLD_DUMPED)
                    code = -info.si_status if dead else info.si_status
        elif self._psutil is not None:
            with suppress(psutil.Error):
                while self._psutil.status() != psutil.STATUS_ZOMBIE:  # noqa: ASYNC110 (polls)
                    await trio.sleep(0.05)
        self._set(code)


class _Request:
    def __init__(self) -> None:
        self.done = trio.Event()
        self.abandoned = False
        self.process: ForkedProcess | None = None
        self.error: SpawnerError | None = None


class Spawner:
    """The parent's end of a server; use :func:`open_spawner` or :meth:`start`/:meth:`aclose`.

    Its methods must be called from the trio run that started it, from any number of tasks.
    """

    def __init__(self, process: trio.Process, stream: trio.SocketStream) -> None:
        self._process = process
        self._stream = stream
        self._frames = Frames()
        self._decoder: msgspec.msgpack.Decoder[FromServer] = msgspec.msgpack.Decoder(FromServer)
        self._send_lock = trio.Lock()
        self._ids = count(1)
        self._requests: dict[int, _Request] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._closed = False
        self._lost = False
        self._reading_done = trio.Event()

    @property
    def pid(self) -> int:
        """The server's pid."""
        return self._process.pid

    @classmethod
    async def start(cls, preload: Sequence[str] = (), *, ready_within: float = 30.0) -> Spawner:
        """Start a server that imports ``preload``; return once it is ready.

        Raises :class:`SpawnerError` if a preload fails or the server exits or does not get
        ready within ``ready_within`` seconds (it is killed then), ProtocolError if it says
        something else than :class:`Ready` first, ValueError for a bad module name.
        """
        for name in preload:
            if not all(part.isidentifier() for part in name.split(".")):
                raise ValueError(f"not a module name: {name!r}")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        command = [sys.executable, "-m", "mcpp.actors.spawner", "--fd", str(theirs.fileno())]
        command += ["--preload", ",".join(preload)]
        try:
            process = await trio.lowlevel.open_process(command, pass_fds=(theirs.fileno(),))
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        spawner = cls(process, trio.SocketStream(trio.socket.from_stdlib_socket(ours)))
        try:
            with trio.fail_after(ready_within):
                await spawner._handshake()
        except BaseException as error:
            with trio.CancelScope(shield=True):
                process.kill()
                await process.wait()
                await spawner._stream.aclose()
            if isinstance(error, trio.TooSlowError):
                raise SpawnerError(f"the spawner was not ready within {ready_within} s") from None
            raise
        trio.lowlevel.spawn_system_task(spawner._read, name=f"mcpp-spawner-{process.pid}")
        return spawner

    async def _handshake(self) -> None:
        while True:
            data = await self._stream.receive_some(65536)
            if not data:
                code = await self._process.wait()
                raise SpawnerError(f"the spawner exited with {code} before it was ready")
            for body in self._frames.feed(data):
                try:
                    message = self._decoder.decode(body)
                except msgspec.DecodeError as error:
                    raise ProtocolError(f"bad message from the spawner: {error}") from None
                if isinstance(message, StartFailed):
                    raise SpawnerError(f"a preload of the spawner failed:\n{message.error}")
                if isinstance(message, Ready) and message.pid == self.pid:
                    return
                raise ProtocolError(f"the spawner said {message!r} before it was ready")

    async def spawn(self, entry: str, payload: bytes) -> ForkedProcess:
        """Fork a child that runs ``entry`` (``"module:function"``) on ``payload``.

        Returns once the server reported the child's pid. Raises :class:`SpawnError` if the
        server refused (bad entry syntax, fork failed), :class:`SpawnerClosed` if the spawner
        is closed or its server is gone, ValueError for a payload over :data:`MAX_FRAME`. If
        this call is cancelled after the request was sent, the child is killed when it comes.
        """
        if self._closed or self._lost:
            raise SpawnerClosed("the spawner is closed")
        request_id = next(self._ids)
        data = frame(Spawn(request_id, entry, payload))
        request = self._requests[request_id] = _Request()
        sent = False
        try:
            async with self._send_lock:
                with trio.CancelScope(shield=True):  # half a frame would break the stream
                    await self._stream.send_all(data)
                    sent = True
            await request.done.wait()
        except BaseException as error:
            if sent:
                request.abandoned = True  # the reader kills the child when it comes
            else:
                self._requests.pop(request_id, None)
            if isinstance(error, trio.BrokenResourceError | trio.ClosedResourceError):
                raise SpawnerClosed("the spawner's server is gone") from None
            raise
        if request.error is not None:
            raise request.error
        assert request.process is not None
        return request.process

    async def _read(self) -> None:
        """System task: dispatch the server's messages; then watch what still lives."""
        async with trio.open_nursery() as nursery:
            try:
                while data := await self._stream.receive_some(65536):
                    for body in self._frames.feed(data):
                        self._dispatch(self._decoder.decode(body))
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            except Exception as error:  # a system task must not raise: the run would crash
                print(f"mcpp spawner {self.pid}: reader stopped: {error!r}", file=sys.stderr)
            finally:
                self._lost = True
                self._reading_done.set()
                for request in self._requests.values():
                    request.error = SpawnerClosed("the spawner's server exited")
                    request.done.set()
                self._requests.clear()
                for child in self._children.values():
                    nursery.start_soon(child._watch)
                self._children.clear()
                with trio.CancelScope(shield=True):
                    await self._stream.aclose()

    def _dispatch(self, message: FromServer) -> None:
        if isinstance(message, Exited):
            child = self._children.pop(message.pid, None)
            if child is not None:
                child._set(message.returncode)
        elif isinstance(message, Spawned):
            child = self._children[message.pid] = ForkedProcess(message.pid)
            request = self._requests.pop(message.request_id, None)
            if request is None or request.abandoned:
                child.kill()
            else:
                request.process = child
                request.done.set()
        elif isinstance(message, SpawnFailed):
            request = self._requests.pop(message.request_id, None)
            if request is not None:
                request.error = SpawnError(message.error)
                request.done.set()
        else:
            raise ProtocolError(f"unexpected message from the spawner: {message!r}")

    async def aclose(self, grace: float = 5.0) -> None:
        """Close the socket; wait (``grace`` s, then SIGKILL) for the server to exit.

        Children still running go on running (their handles watch them, see ForkedProcess);
        they are not signalled. Exits the server reported are applied before this returns.
        Shielded from cancellation; calling it again does nothing more.
        """
        self._closed = True
        with trio.CancelScope(shield=True):
            with suppress(OSError):
                self._stream.socket.shutdown(socket.SHUT_WR)
            with trio.move_on_after(grace):
                await self._process.wait()
            if self._process.returncode is None:
                self._process.kill()
                await self._process.wait()
            with trio.move_on_after(1.0):
                await self._reading_done.wait()
            await self._stream.aclose()

    async def __aenter__(self) -> Spawner:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@asynccontextmanager
async def open_spawner(
    preload: Sequence[str] = (), *, ready_within: float = 30.0
) -> AsyncIterator[Spawner]:
    """``async with open_spawner(["mod"]) as spawner:`` a started server, closed at the end."""
    spawner = await Spawner.start(preload, ready_within=ready_within)
    try:
        yield spawner
    finally:
        await spawner.aclose()
