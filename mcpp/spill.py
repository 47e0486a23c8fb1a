"""Large results out of band: a file in the run's spill folder, a small reference on the wire.

A step's encoded result of at least :data:`SPILL_THRESHOLD` bytes is written once, by the
actor that produced it, into the run's spill folder (``/dev/shm/mcpp-spill-RUN_ID-*``, 0700,
files 0600; the temp folder where there is no ``/dev/shm``); a ``bytes`` or ``bytearray``
result is written straight from the value, with no encoded copy made first
(:func:`spill_bytes`). The ``msgspec.Raw`` that travels in ``StepSucceeded`` and in the next
``StartStep``'s kwargs is a MessagePack extension value naming that file (:data:`REF_CODE`).
The coordinator forwards the reference like any other result and never reads the file; the
consumer's :func:`decode` maps the file and decodes from it; the supervisor maps it
(:func:`materialize`: no copy is made, and the mapping outlives the file) before anything
records the result, so the journal and the result document hold the value itself.

The folder is made by the coordinator (its removal on a dead supervisor registered first) and
removed by the supervisor after the run's last event (:func:`mcpp.actors.root.open_tree`).
Before that, the supervisor removes each file as soon as it has mapped it and every step that
takes the result has finished (:class:`Releaser`).
A reference is only followed into a spill folder (``mcpp-spill-`` under the spill root); its
file is MessagePack, never unpickled.
"""

from __future__ import annotations

import mmap
import os
import secrets
import tempfile
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from typing import Any, Final, cast

import msgspec

__all__ = [
    "REF_CODE",
    "SPILL_THRESHOLD",
    "Releaser",
    "adopt",
    "decode",
    "decode_arguments",
    "folder_for",
    "is_ref",
    "materialize",
    "read",
    "spill",
    "spill_bytes",
]

SPILL_THRESHOLD: Final = 1 << 20
"""Encoded results of at least this many bytes travel as a file (1 MiB)."""

REF_CODE: Final = 77
"""The MessagePack extension type code of a reference to a spilled result."""

_PREFIX: Final = "mcpp-spill-"
_encoder = msgspec.msgpack.Encoder()


def spill_root() -> str:
    """Where spill folders go: ``/dev/shm`` (memory) when it exists, else the temp folder."""
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


def folder_for(run_id: str) -> str:
    """A new spill folder path for run ``run_id`` (not created): random, so that a resumed
    run or a folder left by a killed run never collides, and no other user can take it first
    (the coordinator makes it with ``os.mkdir``, 0700, which fails on a folder that exists)."""
    return os.path.join(spill_root(), f"{_PREFIX}{run_id}-{secrets.token_hex(8)}")


def _new_file(folder: str, fill: Callable[[int], None]) -> msgspec.Raw:
    """A reference to a new private file in ``folder`` that ``fill(fd)`` writes (removed
    again if ``fill`` raises)."""
    path = os.path.join(folder, secrets.token_hex(12))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        fill(fd)
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)
    return msgspec.Raw(_encoder.encode(msgspec.msgpack.Ext(REF_CODE, path.encode())))


def _write(folder: str, parts: tuple[bytes | bytearray | msgspec.Raw, ...]) -> msgspec.Raw:
    """A reference to a new file in ``folder`` holding ``parts`` one after the other."""

    def fill(fd: int) -> None:
        for part in parts:
            view = memoryview(part)
            while view:
                view = view[os.write(fd, view) :]

    return _new_file(folder, fill)


def adopt(path: str, folder: str | None) -> msgspec.Raw:
    """The encoded result in the file ``path`` (one written whole by mcpp: a stored result),
    as a reference to a copy of it made in ``folder`` by the kernel (``sendfile``: the bytes
    never pass through this process), or read inline where there is no ``folder``.

    Raises OSError if the file cannot be read or the copy written.
    """
    with open(path, "rb") as source:
        if folder is None:
            return msgspec.Raw(source.read())

        def fill(fd: int) -> None:
            size, offset = os.fstat(source.fileno()).st_size, 0
            while offset < size:
                offset += os.sendfile(fd, source.fileno(), offset, size - offset)

        return _new_file(folder, fill)


def spill(raw: msgspec.Raw, folder: str | None) -> msgspec.Raw:
    """``raw``, or, when it is large and the run has a spill ``folder``, a reference to a new
    file in ``folder`` holding it. Raises OSError if the file cannot be written (the folder
    is gone: the run is over)."""
    if folder is None or len(raw) < SPILL_THRESHOLD:
        return raw
    return _write(folder, (raw,))


def spill_bytes(value: object, folder: str | None) -> msgspec.Raw | None:
    """A reference to a new file in ``folder`` holding ``value`` encoded, when ``value`` is a
    large ``bytes`` or ``bytearray`` and the run has a spill ``folder``; None otherwise.

    The file is a MessagePack bin header followed by the value itself, written straight from
    it: no encoded copy is made in memory. Raises OSError if the file cannot be written.
    """
    if folder is None or type(value) not in (bytes, bytearray):  # a subclass is not encodable
        return None
    data = cast("bytes | bytearray", value)
    if not SPILL_THRESHOLD <= len(data) < 1 << 32:  # bin 32's limit: larger is an error
        return None
    return _write(folder, (b"\xc6" + len(data).to_bytes(4, "big"), data))


def _checked_path(data: bytes | memoryview) -> str:
    """The file a reference names; ValueError unless it is in a spill folder."""
    path = os.path.normpath(bytes(data).decode())
    folder, name = os.path.split(path)
    parent, base = os.path.split(folder)
    if parent != spill_root() or not base.startswith(_PREFIX) or not name:
        raise ValueError(f"a result reference outside the run's spill folder: {path!r}")
    return path


def is_ref(raw: bytes | msgspec.Raw | memoryview) -> bool:
    """Whether ``raw`` is a reference to a spilled result (not the result itself): one
    MessagePack ext 8 or ext 16 value of type :data:`REF_CODE`."""
    data = memoryview(raw)
    if len(data) > 3 and data[0] == 0xC7:
        return data[2] == REF_CODE and len(data) == 3 + data[1]
    if len(data) > 4 and data[0] == 0xC8:
        return data[3] == REF_CODE and len(data) == 4 + int.from_bytes(data[1:3], "big")
    return False


def read(raw: bytes | msgspec.Raw) -> bytes:
    """The encoded result ``raw`` refers to (``raw`` itself when it is no reference).

    Raises ValueError for a reference outside a spill folder, OSError for a missing file.
    """
    if not is_ref(raw):
        return bytes(raw)
    ext = msgspec.msgpack.decode(raw)
    with open(_checked_path(ext.data), "rb") as file:
        return file.read()


def materialize(raw: msgspec.Raw) -> msgspec.Raw:
    """``raw``, or for a reference the encoded result it names: a ``Raw`` over a read-only
    mapping of its file, so nothing is copied and the pages are read only when used. The
    mapping stays valid after the file is removed, until the ``Raw`` is dropped.

    Raises ValueError for a reference outside a spill folder or an empty file, OSError for a
    missing file.
    """
    if not is_ref(raw):
        return raw
    ext = msgspec.msgpack.decode(raw)
    with open(_checked_path(ext.data), "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size == 0:
            raise ValueError("an empty spilled result")
        mapped = mmap.mmap(file.fileno(), size, access=mmap.ACCESS_READ)
    return msgspec.Raw(memoryview(mapped))


_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder()


def decode(raw: bytes | msgspec.Raw | memoryview) -> Any:
    """Decode one encoded value, or the result a reference names, read from its file (mapped,
    never loaded whole first). Only ``raw`` as a whole can be a reference: an extension value
    inside a result is the result's own and is decoded as a ``msgspec.msgpack.Ext``.

    Raises ValueError for a reference outside a spill folder or an empty file, OSError for a
    missing file, msgspec.DecodeError for bad bytes.
    """
    return _follow(msgspec.msgpack.decode(raw).data) if is_ref(raw) else _decoder.decode(raw)


def _follow(data: bytes | memoryview) -> Any:
    """The result in the file a reference's ``data`` names, decoded from a mapping of it."""
    with open(_checked_path(data), "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size == 0:
            raise ValueError("an empty spilled result")
        with mmap.mmap(file.fileno(), size, access=mmap.ACCESS_READ) as mapped:
            return _decoder.decode(mapped)


def decode_arguments(raw: bytes | msgspec.Raw) -> dict[str, Any]:
    """Decode a step's keyword arguments (``StartStep.kwargs``): an argument that is, as a
    whole, a reference is the upstream result its file holds (:func:`decode`); an extension
    value deeper inside an argument is left as it is. Raises what :func:`decode` raises, and
    TypeError unless ``raw`` is a map."""
    arguments = _decoder.decode(raw)
    if not isinstance(arguments, dict):
        raise TypeError(f"step arguments must be a map, not {type(arguments).__name__}")
    for name, value in arguments.items():
        if isinstance(value, msgspec.msgpack.Ext) and value.code == REF_CODE:
            arguments[name] = _follow(bytes(value.data))
    return arguments


class Releaser:
    """Removes the spill file of a result once the supervisor holds it and no step needs it.

    ``upstreams`` maps each step of the run to the steps whose results it takes. Call
    :meth:`mapped` when a step's result reference has been mapped (:func:`materialize`: the
    mapping outlives the file) and :meth:`finished` when a step has ended for good (succeeded,
    failed with no retry left, skipped or cancelled). A file goes when both its step is mapped
    and every step that takes its result has finished: none of them can read it any more, not
    even a retry. Removal errors are ignored (the folder goes with the run anyway).
    """

    __slots__ = ("_done", "_files", "_readers", "_upstreams")

    def __init__(self, upstreams: Mapping[str, Iterable[str]]) -> None:
        self._upstreams = {step: tuple(ups) for step, ups in upstreams.items()}
        self._readers = dict.fromkeys(self._upstreams, 0)
        for ups in self._upstreams.values():
            for upstream in ups:
                self._readers[upstream] = self._readers.get(upstream, 0) + 1
        self._files: dict[str, str] = {}
        self._done: set[str] = set()

    def mapped(self, step: str, ref: bytes | msgspec.Raw) -> None:
        """``step``'s result, the reference ``ref``, is mapped by the supervisor."""
        self._files[step] = _checked_path(msgspec.msgpack.decode(ref).data)
        self._release(step)

    def finished(self, step: str) -> None:
        """``step`` ended for good: it reads none of its upstream results again."""
        if step in self._done:
            return
        self._done.add(step)
        for upstream in self._upstreams.get(step, ()):
            self._readers[upstream] -= 1
            self._release(upstream)

    def _release(self, step: str) -> None:
        if self._readers.get(step, 0) <= 0 and step in self._files:
            with suppress(OSError):
                os.unlink(self._files.pop(step))
