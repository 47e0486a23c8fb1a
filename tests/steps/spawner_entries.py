"""Entries for tests/test_spawner.py, run in children forked by mcpp.actors.spawner.

Imported as a preload by the spawner's server: with ``MCPP_TEST_PICKLE_MARKER`` set in its
environment, every way to unpickle (``pickle.load(s)``, ``_pickle``, ``Unpickler``) is replaced
by a guard that writes that file and raises, in the server and so in each forked child.
"""

from __future__ import annotations

import os
import resource
import signal
import time
from pathlib import Path
from typing import Any, NoReturn

import msgspec


class Job(msgspec.Struct):
    path: str
    data: bytes


def write_payload(payload: bytes) -> None:
    job = msgspec.msgpack.decode(payload, type=Job)
    Path(job.path).write_bytes(job.data)


def noop(payload: bytes) -> None:
    return None


def return_three(payload: bytes) -> int:
    return 3


def fail(payload: bytes) -> NoReturn:
    raise RuntimeError("this entry fails on purpose")


def sleep_forever(payload: bytes) -> None:
    time.sleep(3600)


def segfault(payload: bytes) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file
    os.kill(os.getpid(), signal.SIGSEGV)


def unpickle(payload: bytes) -> None:
    import pickle

    pickle.loads(pickle.dumps(1))


def _install_guard(marker: str) -> None:
    import _pickle
    import pickle

    def guard(*args: Any, **kwargs: Any) -> NoReturn:
        Path(marker).write_text(f"unpickled in {os.getpid()}")
        raise RuntimeError("pickle is forbidden here")

    class GuardedUnpickler(pickle._Unpickler):
        def load(self) -> NoReturn:
            guard()

    for module in (pickle, _pickle):
        for name in ("loads", "load", "_loads", "_load"):
            if hasattr(module, name):
                setattr(module, name, guard)
        setattr(module, "Unpickler", GuardedUnpickler)  # noqa: B010


if os.environ.get("MCPP_TEST_PICKLE_MARKER"):
    _install_guard(os.environ["MCPP_TEST_PICKLE_MARKER"])
