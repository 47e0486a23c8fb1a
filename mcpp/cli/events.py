"""``spawn --events FILE``: every run event as one JSON line, written as it happens.

The first line is ``{"kind": "run_started", "run_id": ..., "workflow": ..., "ts": ...,
"started_at": "2026-12-01T12:00:00.123+00:00"}``, written before any actor starts. Each other
line is one JSON object: the :mod:`mcpp.protocol` event as msgspec encodes it (its ``kind`` tag
and fields; a step's MessagePack ``result`` decoded to its value), plus ``run_id`` and ``ts``,
the wall-clock time (seconds since the epoch) at which the supervisor received the event. Every
line is flushed at once, so ``tail -f FILE`` or another tool can follow a run. The file holds
parameters and results: it is created private to the user (0600); an existing regular file is
truncated and made 0600.
"""

from __future__ import annotations

import datetime
import os
import stat
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

import msgspec
import msgspec.json

from mcpp import protocol
from mcpp.errors import RunError

if TYPE_CHECKING:
    from mcpp.supervisor.results import RunRecorder
    from mcpp.supervisor.run import EventHook

__all__ = ["EventLog", "event_document", "open_event_hook", "run_started_document"]

_encoder = msgspec.json.Encoder()


def _decode_raw(value: Any) -> Any:
    if isinstance(value, msgspec.Raw):
        return protocol.decode_value(value)
    from mcpp.supervisor.results import json_hook

    return json_hook(value)


def event_document(run_id: str, event: Any, *, ts: float | None = None) -> dict[str, Any]:
    """Return the JSON-ready object for ``event`` of run ``run_id`` (``ts`` defaults to now)."""
    document: dict[str, Any] = msgspec.to_builtins(event, enc_hook=_decode_raw)
    document["run_id"] = run_id
    document["ts"] = time.time() if ts is None else ts
    return document


def run_started_document(run_id: str, workflow: str, *, ts: float | None = None) -> dict[str, Any]:
    """The first line of an events file: the run id, the workflow's name and the start time
    (``ts`` in seconds since the epoch, ``started_at`` the same in ISO 8601, UTC)."""
    ts = time.time() if ts is None else ts
    moment = datetime.datetime.fromtimestamp(ts, datetime.UTC)
    started_at = moment.isoformat(timespec="milliseconds")
    return {
        "kind": "run_started",
        "run_id": run_id,
        "workflow": workflow,
        "ts": ts,
        "started_at": started_at,
    }


class EventLog:
    """Write events to an open binary stream, one flushed JSON line each.

    :meth:`on_event` is an ``on_event`` hook of :func:`~mcpp.supervisor.run.run_spec`; ``then``
    is another hook called after the line is written (the progress display).
    """

    def __init__(self, stream: IO[bytes], then: EventHook | None = None) -> None:
        self.stream = stream
        self.then = then

    def write(self, document: Mapping[str, Any]) -> None:
        """Write ``document`` as one JSON line and flush it."""
        self.stream.write(_encoder.encode(document) + b"\n")
        self.stream.flush()

    def on_event(self, recorder: RunRecorder, event: Any) -> None:
        """Write ``event`` as one line and flush it; then call ``then``."""
        self.write(event_document(recorder.run_id, event))
        if self.then is not None:
            self.then(recorder, event)


@contextmanager
def open_event_hook(
    path: str | os.PathLike[str] | None,
    then: EventHook | None = None,
    *,
    started: Mapping[str, Any] | None = None,
) -> Iterator[EventHook | None]:
    """Yield the hook that writes events to ``path`` (created 0600 or truncated) and calls
    ``then``; ``started`` (:func:`run_started_document`) is written first, at once.

    Without ``path`` yield ``then`` itself. The file is closed on exit. Raises
    :class:`~mcpp.errors.RunError` when the file cannot be opened.
    """
    if path is None:
        yield then
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
    except OSError as exc:
        raise RunError(f"cannot write events to {os.fspath(path)!r}: {exc.strerror}") from exc
    with open(fd, "wb") as stream:
        log = EventLog(stream, then)
        if started is not None:
            log.write(started)
        yield log.on_event
