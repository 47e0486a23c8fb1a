"""Length-prefixed frames over a pipe: how a Dask task and its attempt process talk."""

from __future__ import annotations

import os

__all__ = ["read_frame", "write_frame"]

HEADER = 4


def write_frame(fd: int, data: bytes) -> None:
    """Write ``data`` to ``fd`` as one frame (a 4-byte big-endian length, then the bytes).

    Raises OSError (``BrokenPipeError``) when the reader is gone.
    """
    view = memoryview(len(data).to_bytes(HEADER, "big") + data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_exact(fd: int, size: int) -> bytes | None:
    parts: list[bytes] = []
    left = size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def read_frame(fd: int) -> bytes | None:
    """Read one frame from ``fd``; ``None`` at the end of the stream (also mid-frame)."""
    header = _read_exact(fd, HEADER)
    if header is None:
        return None
    return _read_exact(fd, int.from_bytes(header, "big"))
