"""The cache contract: record types, the :class:`CacheBackend` base class and :func:`parse_ttl`.

Both backends (:class:`~mcpp.cache.memory.MemoryCache` and
:class:`~mcpp.cache.sqlite.SQLiteCache`) subclass :class:`CacheBackend` and pass the same
contract tests. Values are opaque ``bytes`` (msgspec-encoded step results); the cache never
decodes them and never pickles anything.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Literal, Self, get_args

import msgspec

from mcpp.errors import WorkflowError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ENTRIES",
    "POLICIES",
    "CacheBackend",
    "CacheEntry",
    "CacheHit",
    "CacheStats",
    "Policy",
    "check_bounds",
    "check_ttl",
    "parse_ttl",
]

Policy = Literal["lru", "lfu", "fifo"]
"""Eviction policy: least recently read, least often read (ties: oldest), oldest inserted."""

POLICIES: tuple[str, ...] = get_args(Policy)

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_BYTES = 256 * 2**20

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_TTL_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*")


class CacheHit(msgspec.Struct, frozen=True):
    """A value found in the cache. ``get`` returns this or ``None``, so a cached ``None`` result
    (whose encoded bytes are not empty) is still told apart from a miss."""

    value: bytes


class CacheEntry(msgspec.Struct, frozen=True, kw_only=True):
    """Metadata of one cached entry (what ``mcpp cache ls`` shows); times are clock seconds.

    ``size`` is the length of the value in bytes; ``expires_at`` is ``None`` without a TTL;
    ``access_count`` counts hits since the entry was stored.
    """

    key: str
    step_id: str
    created_at: float
    last_access: float
    access_count: int
    size: int
    expires_at: float | None


class CacheStats(msgspec.Struct, frozen=True, kw_only=True):
    """An immutable snapshot of a cache: live ``entries`` and their ``bytes``, and the counters.

    ``hits``/``misses`` count ``get`` calls; ``evictions`` counts entries removed to respect a
    bound; ``expirations`` counts entries removed because their TTL ran out. Invalidation and
    ``clear`` are neither evictions nor expirations.
    """

    entries: int
    bytes: int
    hits: int
    misses: int
    evictions: int
    expirations: int


def parse_ttl(value: bool | str | float, *, step: str | None = None) -> float | None:
    """Return the TTL in seconds that a step's ``cache`` setting asks for.

    ``True`` means cache without expiry and returns ``None``. A positive number is seconds; a
    string is a number with an optional unit: ``"30s"``, ``"5m"``, ``"1h"``, ``"2d"``, ``"90"``
    (seconds), decimals allowed (``"1.5h"``).

    Raises :class:`~mcpp.errors.WorkflowError` (a ``ValueError``; ``field`` is ``"cache"``,
    ``step`` as given) for ``False`` (caching is off: there is no TTL to parse), an unparseable
    string, or a number that is not finite and positive.
    """
    if value is True:
        return None
    if value is False:
        raise WorkflowError("caching is off (false): there is no TTL", step=step, field="cache")
    if isinstance(value, str):
        match = _TTL_RE.fullmatch(value)
        if match is None:
            raise WorkflowError(
                f"cannot parse TTL {value!r}: expected true, seconds, or a number with a unit "
                "s, m, h or d (e.g. '30s', '5m', '1h', '2d')",
                step=step,
                field="cache",
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        raise WorkflowError(
            f"TTL must be true, a number of seconds or a string like '1h', not "
            f"{type(value).__name__}",
            step=step,
            field="cache",
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise WorkflowError(
            f"TTL must be a positive, finite duration, not {value!r}", step=step, field="cache"
        )
    return seconds


def check_ttl(ttl: float | None) -> None:
    """Raise ``ValueError`` unless ``ttl`` is ``None`` or a positive, finite number of seconds."""
    if ttl is not None and not (math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"ttl must be None or a positive number of seconds, not {ttl!r}")


def check_bounds(max_entries: int, max_bytes: int, policy: str) -> None:
    """Raise ``ValueError`` for a bound below 1 or an unknown eviction policy."""
    if max_entries < 1:
        raise ValueError(f"max_entries must be at least 1, not {max_entries!r}")
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be at least 1, not {max_bytes!r}")
    if policy not in POLICIES:
        raise ValueError(
            f"unknown eviction policy {policy!r}: expected one of {', '.join(POLICIES)}"
        )


class CacheBackend(ABC):
    """The contract of a result cache, bounded by entry count and by bytes.

    Keys are strings (see :func:`mcpp.cache.cache_key`), values are ``bytes``, each entry
    belongs to a step id. Storing an entry that would break a bound first removes expired
    entries, then evicts by the chosen policy until the new entry fits:

    - ``"lru"``: the entry least recently read (``get`` hit), or stored if never read;
    - ``"lfu"``: the entry read the fewest times, ties broken by oldest insertion;
    - ``"fifo"``: the entry inserted first, whether read or not.

    An entry is expired once the clock reaches its ``expires_at``; an expired entry is never
    returned. Every method raises ``ValueError`` once the cache is closed. A backend is a context
    manager that closes it.
    """

    @abstractmethod
    def get(self, key: str) -> CacheHit | None:
        """Return the entry's value as a :class:`CacheHit`, or ``None`` on a miss.

        A hit counts as a read for LRU and LFU. An expired entry is removed, counted as an
        expiration, and the call is a miss.
        """

    @abstractmethod
    def put(self, key: str, value: bytes, *, step_id: str, ttl: float | None = None) -> bool:
        """Store ``value`` under ``key`` for ``step_id``, replacing any entry with that key.

        ``ttl`` is seconds from now (``None``: no expiry); a replaced entry starts afresh
        (new creation time, no reads). Returns ``False`` and changes nothing if the value alone
        is larger than ``max_bytes``; ``True`` when stored. Raises ``ValueError`` for a TTL that
        is not positive and ``TypeError`` if ``value`` is not ``bytes``.
        """

    @abstractmethod
    def invalidate(self, key: str) -> bool:
        """Remove the entry with ``key``; return whether there was one."""

    @abstractmethod
    def invalidate_step(self, step_id: str) -> int:
        """Remove every entry of ``step_id``; return how many were removed."""

    @abstractmethod
    def invalidate_pattern(self, pattern: str) -> int:
        """Remove every entry whose step id matches the glob ``pattern`` (case-sensitive
        :func:`fnmatch.fnmatchcase`, e.g. ``"load_*"``); return how many were removed."""

    @abstractmethod
    def purge_expired(self) -> int:
        """Remove expired entries now (counted as expirations); return how many."""

    @abstractmethod
    def entries(self) -> list[CacheEntry]:
        """Return the metadata of every live entry, oldest inserted first (expired entries are
        purged first)."""

    @abstractmethod
    def stats(self) -> CacheStats:
        """Return a snapshot of sizes and counters (expired entries are purged first)."""

    @abstractmethod
    def clear(self) -> int:
        """Remove every entry and reset the counters to zero; return how many entries there were."""

    @abstractmethod
    def close(self) -> None:
        """Release resources; idempotent. Entries of a persistent cache stay on disk."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
