"""``spawn --events FILE``: every run event as one JSON line, written as it happens.

Each line is one JSON object: the :mod:`mcpp.protocol` event as msgspec encodes it (its
``kind`` tag and fields; a step's MessagePack ``result`` decoded to its value), plus ``run_id``
and ``ts``, the wall-clock time (seconds since the epoch) at which the supervisor received the
event. Every line is flushed at once, so ``tail -f FILE`` or another tool can follow a run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import msgspec
import msgspec.json

from mcpp import protocol
from mcpp.errors import RunError
from mcpp.supervisor.results import RunRecorder
from mcpp.supervisor.run import EventHook

__all__ = ["EventLog", "event_document", "open_event_hook"]

_encoder = msgspec.json.Encoder()


def _decode_raw(value: Any) -> Any:
    if isinstance(value, msgspec.Raw):
        return protocol.decode_value(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def event_document(run_id: str, event: Any, *, ts: float | None = None) -> dict[str, Any]:
    """Return the JSON-ready object for ``event`` of run ``run_id`` (``ts`` defaults to now)."""
    document: dict[str, Any] = msgspec.to_builtins(event, enc_hook=_decode_raw)
    document["run_id"] = run_id
    document["ts"] = time.time() if ts is None else ts
    return document


class EventLog:
    """Write events to an open binary stream, one flushed JSON line each.

    :meth:`on_event` is an ``on_event`` hook of :func:`~mcpp.supervisor.run.run_spec`; ``then``
    is another hook called after the line is written (the progress display).
    """

    def __init__(self, stream: IO[bytes], then: EventHook | None = None) -> None:
        self.stream = stream
        self.then = then

    def on_event(self, recorder: RunRecorder, event: Any) -> None:
        """Write ``event`` as one line and flush it; then call ``then``."""
        line = _encoder.encode(event_document(recorder.run_id, event))
        self.stream.write(line + b"\n")
        self.stream.flush()
        if self.then is not None:
            self.then(recorder, event)


@contextmanager
def open_event_hook(
    path: str | os.PathLike[str] | None, then: EventHook | None = None
) -> Iterator[EventHook | None]:
    """Yield the hook that writes events to ``path`` (created or truncated) and calls ``then``.

    Without ``path`` yield ``then`` itself. The file is closed on exit. Raises
    :class:`~mcpp.errors.RunError` when the file cannot be opened.
    """
    if path is None:
        yield then
        return
    try:
        stream = open(path, "wb")  # noqa: SIM115 - closed below, after the run
    except OSError as exc:
        raise RunError(f"cannot write events to {os.fspath(path)!r}: {exc.strerror}") from exc
    with stream:
        yield EventLog(stream, then).on_event
