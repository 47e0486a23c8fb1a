"""Steps of the large-result tests (tests/test_payload.py): big bytes made, passed on, checked."""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

MIB = 1 << 20


def pattern(mib: int) -> bytes:
    """``mib`` MiB of bytes that are not all alike (the same for the same ``mib``)."""
    block = hashlib.sha256(str(mib).encode()).digest() * (MIB // 32)
    return b"".join(block[i:] + block[:i] for i in range(mib))


def make(mib: int, **upstream: Any) -> bytes:
    """Return :func:`pattern` of ``mib`` MiB."""
    return pattern(mib)


def relay(**upstream: Any) -> Any:
    """Return the single upstream result unchanged."""
    (value,) = upstream.values()
    return value


def digest(**upstream: Any) -> dict[str, Any]:
    """The SHA-256 and length of the single upstream ``bytes`` result."""
    (value,) = upstream.values()
    assert isinstance(value, bytes), type(value)
    return {"sha256": hashlib.sha256(value).hexdigest(), "size": len(value)}


def fail_on(**upstream: Any) -> None:
    """Fail after receiving the upstream result."""
    raise RuntimeError("the consumer fails")


def hold(pid_file: str, seconds: float = 60.0, **upstream: Any) -> str:
    """Write this process's pid to ``pid_file`` (once the upstream result is in), then sleep."""
    tmp = pid_file + ".tmp"
    with open(tmp, "w") as file:
        file.write(str(os.getpid()))
    os.replace(tmp, pid_file)
    time.sleep(seconds)
    return "woke"


def lookalike(nested: bool, path: str, **upstream: Any) -> Any:
    """A MessagePack extension value of mcpp's reference type naming ``path``: the result
    itself, or inside a list with ``nested``."""
    import msgspec

    ext = msgspec.msgpack.Ext(77, path.encode())
    return [ext] if nested else ext


def describe(**upstream: Any) -> list[Any]:
    """What the single upstream result is: ``[type name, code, data]`` of each ext in it."""
    (value,) = upstream.values()
    return [[type(v).__name__, v.code, bytes(v.data).decode()] for v in value]


def gate(pid_file: str, go_file: str, **upstream: Any) -> str:
    """Write this process's pid to ``pid_file``, then wait (at most 60 s) for ``go_file``."""
    hold(pid_file, seconds=0)
    deadline = time.monotonic() + 60
    while not os.path.exists(go_file) and time.monotonic() < deadline:
        time.sleep(0.02)
    return "went"


def flaky(marker: str, **upstream: Any) -> dict[str, Any]:
    """Fail on the first attempt (leaving ``marker``), then return :func:`digest`."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("the first attempt fails")
    return digest(**upstream)


def digest_once_allowed(marker: str, **upstream: Any) -> dict[str, Any]:
    """Fail until ``marker`` exists (a user fixing the cause), then return :func:`digest`."""
    if not os.path.exists(marker):
        raise RuntimeError("not yet: create the marker")
    return digest(**upstream)
