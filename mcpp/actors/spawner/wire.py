"""The spawner's wire format, both ways, and the messages it carries.

A frame is a 4-byte big-endian length (at most :data:`MAX_FRAME`), then that many bytes of
msgpack of one tagged Struct, decoded by a typed ``msgspec`` decoder; nothing is ever pickled.
The parent sends :class:`Spawn`; the server answers with the :data:`FromServer` messages.
"""

from __future__ import annotations

import struct

import msgspec

from mcpp.errors import ProtocolError

__all__ = [
    "ENCODER",
    "HEADER",
    "MAX_FRAME",
    "Exited",
    "Frames",
    "FromServer",
    "Ready",
    "Spawn",
    "SpawnFailed",
    "Spawned",
    "StartFailed",
    "frame",
    "valid_entry",
]

MAX_FRAME = 16 * 1024 * 1024
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
ENCODER = msgspec.msgpack.Encoder()


def frame(message: msgspec.Struct) -> bytes:
    """``message`` as one frame; raises ValueError if it is longer than :data:`MAX_FRAME`."""
    body = ENCODER.encode(message)
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


def valid_entry(entry: str) -> bool:
    module, colon, function = entry.partition(":")
    return bool(colon) and all(p.isidentifier() for p in (*module.split("."), *function.split(".")))
