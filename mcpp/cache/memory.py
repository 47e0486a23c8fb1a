"""An in-process cache: a dict under a lock, for tests and for runs that need no persistence."""

from __future__ import annotations

import fnmatch
import heapq
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from mcpp.cache.model import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
    CacheBackend,
    CacheEntry,
    CacheHit,
    CacheStats,
    Policy,
    check_bounds,
    check_ttl,
)

__all__ = ["MemoryCache"]


@dataclass
class _Slot:
    value: bytes
    step_id: str
    created_at: float
    last_access: float
    access_count: int
    expires_at: float | None
    inserted: int


class MemoryCache(CacheBackend):
    """A bounded in-memory :class:`CacheBackend`; safe to share between threads.

    Counters live in this object only. Raises ``ValueError`` for a bound below 1 or an unknown
    policy.
    """

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        policy: Policy = "lru",
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_bounds(max_entries, max_bytes, policy)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.policy: Policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        # Insertion order (FIFO); for LRU a hit also moves the key to the end.
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self._bytes = 0
        self._sequence = 0
        # (expires_at, inserted, key) of entries with a TTL; stale items are skipped when popped.
        self._deadlines: list[tuple[float, int, str]] = []
        self._hits = self._misses = self._evictions = self._expirations = 0
        self._closed = False

    def get(self, key: str) -> CacheHit | None:
        with self._lock:
            self._check_open()
            slot = self._slots.get(key)
            if slot is not None and self._expired(slot, self._clock()):
                self._remove(key)
                self._expirations += 1
                slot = None
            if slot is None:
                self._misses += 1
                return None
            self._hits += 1
            slot.access_count += 1
            slot.last_access = self._clock()
            if self.policy == "lru":
                self._slots.move_to_end(key)
            return CacheHit(slot.value)

    def put(self, key: str, value: bytes, *, step_id: str, ttl: float | None = None) -> bool:
        if not isinstance(value, bytes):
            raise TypeError(f"cache values are bytes, not {type(value).__name__}")
        check_ttl(ttl)
        size = len(value)
        with self._lock:
            self._check_open()
            if size > self.max_bytes:
                return False
            now = self._clock()
            if key in self._slots:
                self._remove(key)
            self._purge(now)
            while self._slots and (
                len(self._slots) + 1 > self.max_entries or self._bytes + size > self.max_bytes
            ):
                self._remove(self._victim())
                self._evictions += 1
            self._sequence += 1
            self._slots[key] = _Slot(
                value=value,
                step_id=step_id,
                created_at=now,
                last_access=now,
                access_count=0,
                expires_at=None if ttl is None else now + ttl,
                inserted=self._sequence,
            )
            if ttl is not None:
                heapq.heappush(self._deadlines, (now + ttl, self._sequence, key))
                if len(self._deadlines) > 2 * len(self._slots) + 64:
                    self._compact_deadlines()
            self._bytes += size
            return True

    def invalidate(self, key: str) -> bool:
        with self._lock:
            self._check_open()
            if key not in self._slots:
                return False
            self._remove(key)
            return True

    def invalidate_step(self, step_id: str) -> int:
        return self._invalidate_where(lambda s: s == step_id)

    def invalidate_pattern(self, pattern: str) -> int:
        return self._invalidate_where(lambda s: fnmatch.fnmatchcase(s, pattern))

    def purge_expired(self) -> int:
        with self._lock:
            self._check_open()
            return self._purge(self._clock())

    def entries(self) -> list[CacheEntry]:
        with self._lock:
            self._check_open()
            self._purge(self._clock())
            slots = sorted(self._slots.items(), key=lambda item: item[1].inserted)
            return [
                CacheEntry(
                    key=key,
                    step_id=slot.step_id,
                    created_at=slot.created_at,
                    last_access=slot.last_access,
                    access_count=slot.access_count,
                    size=len(slot.value),
                    expires_at=slot.expires_at,
                )
                for key, slot in slots
            ]

    def stats(self) -> CacheStats:
        with self._lock:
            self._check_open()
            self._purge(self._clock())
            return CacheStats(
                entries=len(self._slots),
                bytes=self._bytes,
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                expirations=self._expirations,
            )

    def clear(self) -> int:
        with self._lock:
            self._check_open()
            count = len(self._slots)
            self._slots.clear()
            self._deadlines.clear()
            self._bytes = 0
            self._hits = self._misses = self._evictions = self._expirations = 0
            return count

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._slots.clear()
            self._deadlines.clear()
            self._bytes = 0

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the cache is closed")

    @staticmethod
    def _expired(slot: _Slot, now: float) -> bool:
        return slot.expires_at is not None and now >= slot.expires_at

    def _remove(self, key: str) -> None:
        self._bytes -= len(self._slots.pop(key).value)

    def _purge(self, now: float) -> int:
        count = 0
        while self._deadlines and self._deadlines[0][0] <= now:
            _, inserted, key = heapq.heappop(self._deadlines)
            slot = self._slots.get(key)
            if slot is not None and slot.inserted == inserted:
                self._remove(key)
                count += 1
        self._expirations += count
        return count

    def _compact_deadlines(self) -> None:
        live = self._slots
        self._deadlines = [
            d for d in self._deadlines if d[2] in live and live[d[2]].inserted == d[1]
        ]
        heapq.heapify(self._deadlines)

    def _victim(self) -> str:
        if self.policy == "lfu":
            return min(
                self._slots, key=lambda k: (self._slots[k].access_count, self._slots[k].inserted)
            )
        # LRU keeps the dict in recency order, FIFO in insertion order: the first key goes.
        return next(iter(self._slots))

    def _invalidate_where(self, matches: Callable[[str], bool]) -> int:
        with self._lock:
            self._check_open()
            doomed = [key for key, slot in self._slots.items() if matches(slot.step_id)]
            for key in doomed:
                self._remove(key)
            return len(doomed)
