"""A preloaded fork server that speaks msgspec only, reachable by no one but its parent.

The parent (a trio program) starts ``python -m mcpp.actors.spawner --fd N --preload a,b``
with ``N`` one end of a ``socketpair(AF_UNIX, SOCK_STREAM)``; no path, no port: only the
parent holds the other end. The server imports the preload modules, says :class:`Ready`, then
serves :class:`Spawn` requests until EOF (the parent closed its end or died) and exits at once,
without waiting for or signalling its children. It forks one child per request and reports
:class:`Spawned` (or :class:`SpawnFailed`), then :class:`Exited` when it reaps the child.

Wire format, both ways: a 4-byte big-endian length (at most :data:`MAX_FRAME`), then that many
bytes of msgpack of one tagged Struct, decoded by a typed ``msgspec`` decoder; nothing is ever
pickled. A frame the server cannot decode (too long, garbage, wrong type) makes it print one
line to stderr and exit with :data:`PROTOCOL_ERROR_EXIT`; its children are not touched.

A forked child closes the server's socket, pipe and selector, gets back the signal handlers the
interpreter started with (SIGINT raises KeyboardInterrupt, SIGCHLD and SIGTERM are default),
keeps the server's process group, session, cwd, environment and stdio (those of the parent when
it started the server), imports ``entry`` (``"module:function"``), calls ``function(payload)``
and leaves with ``os._exit`` (no atexit handlers): the int it returns (``None`` is 0), the
code of a ``SystemExit``, or 1 after printing the traceback of any other exception.
"""

from __future__ import annotations

import argparse
import importlib
import os
import selectors
import signal
import socket
import struct
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from itertools import count
from typing import Any, NoReturn

import msgspec
import psutil
import trio

from mcpp.errors import ProtocolError, RunError

__all__ = [
    "MAX_FRAME",
    "PROTOCOL_ERROR_EXIT",
    "UNKNOWN_RETURNCODE",
    "Exited",
    "ForkedProcess",
    "Ready",
    "Spawn",
    "SpawnError",
    "SpawnFailed",
    "Spawned",
    "Spawner",
    "SpawnerClosed",
    "SpawnerError",
    "StartFailed",
    "open_spawner",
]

MAX_FRAME = 16 * 1024 * 1024
PROTOCOL_ERROR_EXIT = 2
# Reported for a child whose exit the server could not report (it died first) and whose status
# this process cannot collect (the child is not its own): multiprocessing's choice as well.
UNKNOWN_RETURNCODE = 255
HEADER = struct.Struct(">I")


class Spawn(msgspec.Struct, tag=True, frozen=True):
    """Parent -> server: fork a child that runs ``entry`` on ``payload``."""

    request_id: int
    entry: str
    payload: bytes


class Ready(msgspec.Struct, tag=True, frozen=True):
    """Server -> parent, once: the preloads are imported; the server serves requests."""

    pid: int


class StartFailed(msgspec.Struct, tag=True, frozen=True):
    """Server -> parent, instead of :class:`Ready`: a preload failed; the server exits 1."""

    error: str


class Spawned(msgspec.Struct, tag=True, frozen=True):
    request_id: int
    pid: int


class SpawnFailed(msgspec.Struct, tag=True, frozen=True):
    request_id: int
    error: str


class Exited(msgspec.Struct, tag=True, frozen=True):
    """``returncode`` is ``-N`` for a child killed by signal N, as in :mod:`subprocess`."""

    pid: int
    returncode: int


FromServer = Ready | StartFailed | Spawned | SpawnFailed | Exited
_encoder = msgspec.msgpack.Encoder()


class SpawnerError(RunError):
    """The spawner cannot do what was asked."""


class SpawnerClosed(SpawnerError):
    """The spawner was closed, or its server exited."""


class SpawnError(SpawnerError):
    """The server refused or failed to fork a child (the message says why)."""


def frame(message: msgspec.Struct) -> bytes:
    """``message`` as one frame; raises ValueError if it is longer than :data:`MAX_FRAME`."""
    body = _encoder.encode(message)
    if len(body) > MAX_FRAME:
        raise ValueError(f"message of {len(body)} bytes (at most {MAX_FRAME})")
    return HEADER.pack(len(body)) + body


class Frames:
    """Split a byte stream into frame bodies; raises ProtocolError for a length too large."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        bodies = []
        while len(self.buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(self.buffer)
            if size > MAX_FRAME:
                raise ProtocolError(f"frame of {size} bytes (at most {MAX_FRAME})")
            if len(self.buffer) < HEADER.size + size:
                break
            bodies.append(bytes(self.buffer[HEADER.size : HEADER.size + size]))
            del self.buffer[: HEADER.size + size]
        return bodies


def _valid_entry(entry: str) -> bool:
    module, colon, function = entry.partition(":")
    return bool(colon) and all(p.isidentifier() for p in (*module.split("."), *function.split(".")))


# ---------------------------------------------------------------------------------------- server


def serve(fd: int, preload: Sequence[str]) -> int:
    """Run the server on the connected socket ``fd``; return its exit code.

    0 at EOF (or when the parent is gone), 1 if a preload fails, :data:`PROTOCOL_ERROR_EXIT`
    for a frame it cannot decode.
    """
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)
    startup = {sig: signal.getsignal(sig) for sig in signal.valid_signals()}
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent; EOF ends this.
    try:
        for name in preload:
            importlib.import_module(name)
    except BaseException:
        with suppress(OSError):
            sock.sendall(frame(StartFailed(traceback.format_exc())))
        return 1
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)  # a handler, so the fd is written
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    children: set[int] = set()
    decoder = msgspec.msgpack.Decoder(Spawn)
    frames = Frames()

    def reap() -> None:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            children.discard(pid)
            sock.sendall(frame(Exited(pid, os.waitstatus_to_exitcode(status))))

    def in_child() -> None:
        signal.set_wakeup_fd(-1)
        for sig, handler in startup.items():
            if handler is not None and signal.getsignal(sig) != handler:
                signal.signal(sig, handler)
        selector.close()
        sock.close()
        os.close(wake_r)
        os.close(wake_w)

    def spawn(request: Spawn) -> None:
        if not _valid_entry(request.entry):
            error = f"entry {request.entry!r} is not 'module:function'"
            sock.sendall(frame(SpawnFailed(request.request_id, error)))
            return
        for stream in (sys.stdout, sys.stderr):
            with suppress(Exception):
                stream.flush()
        try:
            pid = os.fork()
        except OSError as error:
            sock.sendall(frame(SpawnFailed(request.request_id, f"fork failed: {error}")))
            return
        if pid == 0:
            run_child(request.entry, request.payload, in_child)
        children.add(pid)
        sock.sendall(frame(Spawned(request.request_id, pid)))

    try:
        sock.sendall(frame(Ready(os.getpid())))
        while True:
            for key, _ in selector.select():
                if key.fd == wake_r:
                    with suppress(BlockingIOError):
                        os.read(wake_r, 4096)
                    reap()
                    continue
                data = sock.recv(65536)
                if not data:
                    if frames.buffer:
                        raise ProtocolError("EOF in the middle of a frame")
                    reap()  # the parent may still read (it shut down its writing side only)
                    return 0
                for body in frames.feed(data):
                    spawn(decoder.decode(body))
    except (ProtocolError, msgspec.DecodeError) as error:
        print(f"mcpp spawner {os.getpid()}: protocol error, exiting: {error}", file=sys.stderr)
        return PROTOCOL_ERROR_EXIT
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the parent is gone
    finally:
        selector.close()
        sock.close()


def run_child(entry: str, payload: bytes, prepare: Callable[[], None]) -> NoReturn:
    """In a forked child: ``prepare()``, run ``entry(payload)``, ``os._exit`` with its code."""
    code = 1
    try:
        prepare()
        module, _, qualname = entry.partition(":")
        function: Any = importlib.import_module(module)
        for name in qualname.split("."):
            function = getattr(function, name)
        code = _exit_code(function(payload))
    except SystemExit as leaving:
        code = _exit_code(leaving.code)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with suppress(Exception):
                stream.flush()
        os._exit(code)


def _exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF  # what exit(2) keeps of it
    print(f"entry returned {value!r}, not an int or None", file=sys.stderr)
    return 1


# ---------------------------------------------------------------------------------------- client


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcpp.actors.spawner")
    parser.add_argument("--fd", type=int, required=True, help="the connected socket to serve")
    parser.add_argument("--preload", default="", help="modules to import, comma-separated")
    args = parser.parse_args(argv)
    return serve(args.fd, [name for name in args.preload.split(",") if name])


if __name__ == "__main__":
    sys.exit(main())
