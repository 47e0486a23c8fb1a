"""The result cache: skip a step whose function, arguments and upstream results are unchanged.

A step opts in with ``cache = true`` (no expiry) or a TTL (``cache = "1h"``, see
:func:`parse_ttl`). Its key is :func:`cache_key` of the step function, its arguments and its
upstreams' keys; its value is the msgspec-encoded result, stored as ``bytes``::

    with open_cache() as cache:                       # SQLite file under the mcpp home
        key = cache_key(fn, args, upstream_keys)
        hit = cache.get(key)
        if hit is None:
            value = encode(fn(**args))
            cache.put(key, value, step_id="extract", ttl=parse_ttl(step.cache, step="extract"))
        else:
            value = hit.value                         # a cached None result is a hit too

Two backends share the :class:`CacheBackend` contract: :class:`MemoryCache` and the
persistent, multi-process :class:`SQLiteCache`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from mcpp.cache.keys import cache_key, function_identity, hash_result
from mcpp.cache.memory import MemoryCache
from mcpp.cache.model import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
    CacheBackend,
    CacheEntry,
    CacheHit,
    CacheStats,
    Policy,
    parse_ttl,
)
from mcpp.cache.sqlite import SQLiteCache
from mcpp.home import mcpp_home

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ENTRIES",
    "CacheBackend",
    "CacheEntry",
    "CacheHit",
    "CacheStats",
    "MemoryCache",
    "Policy",
    "SQLiteCache",
    "cache_key",
    "default_path",
    "function_identity",
    "hash_result",
    "mcpp_home",
    "open_cache",
    "parse_ttl",
]


def default_path() -> Path:
    """Return the default SQLite cache file, ``cache.sqlite3`` in :func:`mcpp_home`."""
    return mcpp_home() / "cache.sqlite3"


def open_cache(
    kind: Literal["sqlite", "memory"] = "sqlite",
    path: str | os.PathLike[str] | None = None,
    *,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    max_bytes: int = DEFAULT_MAX_BYTES,
    policy: Policy = "lru",
    clock: Callable[[], float] = time.time,
) -> CacheBackend:
    """Open a bounded result cache; use it as a context manager or call ``close()``.

    ``kind="sqlite"`` (the default) opens or creates the file ``path``, by default
    :func:`default_path`; ``kind="memory"`` makes a :class:`MemoryCache` and takes no path.
    ``clock`` gives the time in seconds for TTLs and entry times (inject a fake one in tests).

    Raises ``ValueError`` for an unknown kind or policy, a bound below 1, a path given with
    ``kind="memory"``, or a file that is not an mcpp cache.
    """
    if kind == "memory":
        if path is not None:
            raise ValueError("a memory cache takes no path")
        return MemoryCache(max_entries=max_entries, max_bytes=max_bytes, policy=policy, clock=clock)
    if kind == "sqlite":
        return SQLiteCache(
            default_path() if path is None else path,
            max_entries=max_entries,
            max_bytes=max_bytes,
            policy=policy,
            clock=clock,
        )
    raise ValueError(f"unknown cache kind {kind!r}: expected 'sqlite' or 'memory'")
