"""Capture what a step writes: file descriptors 1 and 2, and ``logging`` records.

An actor that runs steps (per-step or pool worker) points its descriptors 1 and 2 at two
pipes for its whole life (:class:`OutputCapture`), so whatever writes there is captured:
``print``, ``os.write(1, ...)``, C extensions, and every process a step starts (they inherit
the descriptors). A reader thread moves what arrives into the log of the attempt that is
running (:mod:`mcpp.steplog` has the layout and line format), tagging each line with its
stream. A handler on the root logger writes ``logging`` records there too, with their level.

Between attempts nothing is being captured: what arrives then (an actor's own error, a thread
a step left behind) goes to the actor's original standard error, never to its standard
output. So a step's output never reaches the terminal or a ``--json`` document.

At the end of an attempt :meth:`OutputCapture.end` flushes ``sys.stdout``/``sys.stderr``,
moves what the pipes hold into the log, and returns the last
:data:`~mcpp.steplog.TAIL_LINES` lines of the attempt's stderr. A ``logging`` record first
moves what the pipes hold, so it comes after what was printed before it. Output still in a pipe when
the actor is killed (a timed-out per-step actor, a pool worker's watchdog exit) is lost.

``logging``: the handler on the root logger makes ``logging.basicConfig()`` in a step a no-op
(it configures only a root logger without handlers); records that pass their logger's level
(WARNING by default) reach the log. A handler a step adds itself still writes where it writes
(to stderr: the line is then in the log twice, once as ``err``, once as ``log``).
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import select
import struct
import sys
import termios
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Final

import msgspec

from mcpp.home import PRIVATE_FILE, private_folder
from mcpp.protocol import StartStep, StepFailed
from mcpp.steplog import (
    CAP_ENV,
    DEFAULT_CAP,
    MAX_LINE,
    TAIL_LINES,
    TRUNCATED,
    attempt_path,
    encode_line,
)

__all__ = ["AttemptLog", "OutputCapture", "with_stderr_tail"]

TAIL_LEVELS = frozenset({b"log:WARNING", b"log:ERROR", b"log:CRITICAL"})
"""``logging`` records that join the stderr tail (what logging's default handler prints)."""

CHUNK: Final = 64 * 1024
FORMATTER: Final = logging.Formatter("%(message)s")
OPEN_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``; give up quietly if it fails (a full disk, a closed
    descriptor): output that cannot be kept must not stop the step."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        return


class AttemptLog:
    """The log of one attempt: opened on its first line, capped at ``cap`` bytes.

    Without ``log_dir`` lines go, untagged, to ``fallback`` (the actor's standard error).
    """

    def __init__(
        self, log_dir: str | None, step: str, attempt: int, cap: int | None, fallback: int
    ) -> None:
        self.path = None if log_dir is None else attempt_path(log_dir, step, attempt)
        self.cap = cap or DEFAULT_CAP
        self.fallback = fallback
        self.fd: int | None = None
        self.size = 0
        self.truncated = False
        self.partial: dict[bytes, bytes] = {b"out": b"", b"err": b""}
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)

    def lines(self, tag: bytes, lines: list[bytes]) -> None:
        """Write whole ``lines`` (no line breaks) of stream ``tag``."""
        if tag == b"err":
            self.tail.extend(line.decode(errors="replace") for line in lines[-TAIL_LINES:])
        elif tag in TAIL_LEVELS:  # as logging's own handler would, they count as stderr
            texts = [line.decode(errors="replace") for line in lines]
            texts[0] = f"{tag[len(b'log:') :].decode()}: {texts[0]}"  # a record's first line
            self.tail.extend(texts[-TAIL_LINES:])
        if self.path is None:
            write_all(self.fallback, b"".join(line + b"\n" for line in lines))
            return
        if self.truncated:
            return
        at = time.time()
        data = b"".join(encode_line(at, tag, line) for line in lines)
        if self.size + len(data) > self.cap:
            cut = data.rfind(b"\n", 0, self.cap - self.size) + 1
            marker = TRUNCATED.format(cap=self.cap, env=CAP_ENV).encode()
            data = data[:cut] + encode_line(at, b"log:WARNING", marker)
            self.truncated = True
        self.write(data)

    def write(self, data: bytes) -> None:
        if self.fd is None:
            assert self.path is not None
            try:
                private_folder(Path(self.path).parent)
                self.fd = os.open(self.path, OPEN_FLAGS, PRIVATE_FILE)
            except OSError:
                self.truncated = True  # nowhere to write: drop the rest
                return
        write_all(self.fd, data)
        self.size += len(data)

    def feed(self, tag: bytes, chunk: bytes) -> None:
        """Add bytes read from stream ``tag``; write the lines they complete."""
        lines = (self.partial[tag] + chunk).split(b"\n")
        rest = lines.pop()
        while len(rest) > MAX_LINE:
            lines.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self.partial[tag] = rest
        if any(len(line) > MAX_LINE for line in lines):
            lines = [
                line[i : i + MAX_LINE] for line in lines for i in range(0, len(line) or 1, MAX_LINE)
            ]
        if lines:
            self.lines(tag, lines)

    def close(self) -> tuple[str, ...]:
        """Write the lines left without a line break; close the file; return the stderr tail."""
        for tag, rest in self.partial.items():
            if rest:
                self.lines(tag, [rest])
        self.partial = {b"out": b"", b"err": b""}
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        return tuple(self.tail)


class CaptureHandler(logging.Handler):
    """The root logger's handler in a step actor: records go to the running attempt's log."""

    def __init__(self, capture: OutputCapture) -> None:
        super().__init__()
        self.capture = capture

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = FORMATTER.format(record)
            if record.name != "root":
                text = f"{record.name}: {text}"
        except Exception:
            self.handleError(record)
            return
        self.capture.record(record.levelname, record.levelno, text)


class OutputCapture:
    """Point descriptors 1 and 2 of this process at pipes, and keep what arrives.

    Made once per actor, before anything else runs in it (a pool worker's hygiene snapshot
    then records the pipes as its standard descriptors). :meth:`begin` and :meth:`end`
    bracket each attempt.
    """

    def __init__(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            flush(stream)
        self.fallback = os.dup(2)  # not inheritable: no step process holds it
        self.lock = threading.Lock()
        self.tags: dict[int, bytes] = {}
        for fd, tag in ((1, b"out"), (2, b"err")):
            read, write = os.pipe()
            os.set_blocking(read, False)  # drain() and the reader thread both read it
            os.dup2(write, fd)  # inheritable: every process a step starts writes here
            os.close(write)
            self.tags[read] = tag
        if isinstance(sys.stdout, io.TextIOWrapper):  # print() lines arrive as they are made
            sys.stdout.reconfigure(line_buffering=True)
        self.current: AttemptLog | None = None
        self.handler = CaptureHandler(self)
        logging.getLogger().addHandler(self.handler)
        threading.Thread(target=self.read, name="mcpp-output-capture", daemon=True).start()

    def begin(self, start: StartStep) -> None:
        """Capture into the log of ``start``'s attempt from now on."""
        root = logging.getLogger()
        if self.handler not in root.handlers:  # a step called basicConfig(force=True)
            root.addHandler(self.handler)
        with self.lock:
            self.current = AttemptLog(
                start.log_dir, start.step, start.attempt, start.log_cap, self.fallback
            )

    def end(self, *, settle: bool = True) -> tuple[str, ...]:
        """Stop capturing into the running attempt's log; return its stderr tail.

        With ``settle`` it first flushes Python's standard streams and moves into the log
        what the pipes hold by now (what the step and its ended processes wrote).
        """
        if settle:
            for stream in (sys.stdout, sys.stderr):
                flush(stream)
        with self.lock:
            if settle:
                self.drain()
            current, self.current = self.current, None
        return () if current is None else current.close()

    def drain(self) -> None:
        """Move what the pipes hold now (no more: a writer that never stops cannot hold it
        up) to where it belongs; the lock held."""
        buffer = bytearray(4)
        for fd, tag in self.tags.items():
            try:
                fcntl.ioctl(fd, termios.FIONREAD, buffer)
            except OSError:
                continue
            left = struct.unpack("i", buffer)[0]
            while left > 0:
                try:
                    chunk = os.read(fd, min(left, CHUNK))
                except OSError:  # BlockingIOError: nothing left after all
                    break
                if not chunk:
                    break
                left -= len(chunk)
                self.deliver(tag, chunk)

    def deliver(self, tag: bytes, chunk: bytes) -> None:
        """Put ``chunk`` of stream ``tag`` where it belongs now; the lock held."""
        if self.current is None:
            write_all(self.fallback, chunk)
        else:
            self.current.feed(tag, chunk)

    def record(self, level: str, levelno: int, text: str) -> None:
        """Write a ``logging`` record (from the handler, in any thread), after what the pipes
        hold: what was printed before the record comes before it."""
        lines = [line.encode(errors="backslashreplace") for line in text.split("\n")]
        with self.lock:
            self.drain()
            current = self.current
            if current is not None and current.path is not None:
                current.lines(b"log:" + level.encode(), lines)
            elif levelno >= logging.WARNING:  # as logging's last-resort handler would
                write_all(self.fallback, f"{level}: {text}\n".encode(errors="replace"))

    def read(self) -> None:
        """The reader thread: move what the pipes deliver to where it belongs."""
        poller = select.poll()
        for fd in self.tags:
            poller.register(fd, select.POLLIN)
        open_fds = set(self.tags)
        while open_fds:
            events = poller.poll()
            with self.lock:
                for fd, _event in events:
                    try:
                        chunk = os.read(fd, CHUNK)
                    except BlockingIOError:  # drain() took it first
                        continue
                    except OSError:
                        chunk = b""
                    if not chunk:  # every write end closed (a step closed 1 or 2)
                        poller.unregister(fd)
                        open_fds.discard(fd)
                        continue
                    self.deliver(self.tags[fd], chunk)


def flush(stream: Any) -> None:
    """Flush ``stream`` if it can be (a step may have closed or replaced it)."""
    try:
        stream.flush()
    except (OSError, ValueError, AttributeError):
        return


def with_stderr_tail(outcome: Any, tail: tuple[str, ...]) -> Any:
    """``outcome`` with ``tail`` in its error if it is a StepFailed; else ``outcome``."""
    if not tail or not isinstance(outcome, StepFailed):
        return outcome
    error = msgspec.structs.replace(outcome.error, stderr_tail=tail)
    return msgspec.structs.replace(outcome, error=error)
