"""The fork server's process, and what each child it forks does around its entry.

A frame the server cannot decode (too long, garbage, wrong type) makes it print one line to
stderr and exit with :data:`PROTOCOL_ERROR_EXIT`; its children are not touched.

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
import sys
import traceback
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any, NoReturn

import msgspec

from mcpp.actors.spawner import wire
from mcpp.errors import ProtocolError

__all__ = ["PROTOCOL_ERROR_EXIT", "main", "run_child", "serve"]

PROTOCOL_ERROR_EXIT = 2


def serve(fd: int, preload: Sequence[str]) -> int:
    """Run the server on the connected socket ``fd``; return its exit code.

    0 at EOF (or when the parent is gone), 1 if a preload fails, :data:`PROTOCOL_ERROR_EXIT`
    for a frame it cannot decode.
    """
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)
    startup = {sig: signal.getsignal(sig) for sig in signal.valid_signals()}
    startup[signal.SIGINT] = signal.default_int_handler  # a child's, as in a fresh interpreter
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent; EOF ends this.
    try:
        for name in preload:
            importlib.import_module(name)
    except BaseException:
        with suppress(OSError):
            sock.sendall(wire.frame(wire.StartFailed(traceback.format_exc())))
        return 1
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)  # a handler, so the fd is written
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    children: set[int] = set()
    decoder = msgspec.msgpack.Decoder(wire.Spawn)
    frames = wire.Frames()

    def reap() -> None:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            children.discard(pid)
            sock.sendall(wire.frame(wire.Exited(pid, os.waitstatus_to_exitcode(status))))

    def in_child() -> None:
        signal.set_wakeup_fd(-1)
        for sig, handler in startup.items():
            if handler is not None and signal.getsignal(sig) != handler:
                signal.signal(sig, handler)
        selector.close()
        sock.close()
        os.close(wake_r)
        os.close(wake_w)

    def spawn(request: wire.Spawn) -> None:
        if not wire.valid_entry(request.entry):
            error = f"entry {request.entry!r} is not 'module:function'"
            sock.sendall(wire.frame(wire.SpawnFailed(request.request_id, error)))
            return
        for stream in (sys.stdout, sys.stderr):
            with suppress(Exception):
                stream.flush()
        try:
            pid = os.fork()
        except OSError as error:
            sock.sendall(wire.frame(wire.SpawnFailed(request.request_id, f"fork failed: {error}")))
            return
        if pid == 0:
            run_child(request.entry, request.payload, in_child)
        children.add(pid)
        sock.sendall(wire.frame(wire.Spawned(request.request_id, pid)))

    try:
        sock.sendall(wire.frame(wire.Ready(os.getpid())))
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


def main(argv: Sequence[str] | None = None) -> int:
    """The server's command line: ``--fd N --preload a,b``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m mcpp.actors.spawner")
    parser.add_argument("--fd", type=int, required=True, help="the connected socket to serve")
    parser.add_argument("--preload", default="", help="modules to import, comma-separated")
    args = parser.parse_args(argv)
    return serve(args.fd, [name for name in args.preload.split(",") if name])
