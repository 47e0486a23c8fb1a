"""Step result caching for one run: the supervisor hashes functions, the coordinator looks up.

A step opts in with ``cache = true`` (no expiry) or a TTL (``cache = "1h"``). Its key is a
content hash of its function identity (module, qualified name, source), its arguments and its
upstream results' keys, so a change to any of them misses. The work is split between two
processes, because the coordinator must never import user code:

- the supervisor, which imports step targets anyway, calls :func:`identities` once per run and
  sends the hashes to the coordinator in ``RunWorkflow.identities``;
- the coordinator builds a :class:`StepCache` from the spec, those hashes and the cache file,
  and asks it before starting each step::

      with StepCache(spec, run.identities, run.cache_path) as cache:
          key, hit = cache.lookup(step.id, step.args, {u: results[u] for u in step.depends_on})
          if hit is None:
              result = ...                            # run the step
              cache.store(step.id, key, result)       # a no-op when key is None
          else:
              result = hit                            # a cached None result is a hit too

An upstream that is cached itself contributes its key (the :class:`StepCache` remembers it from
its own lookup); any other upstream contributes a hash of its MessagePack bytes, never decoded.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import msgspec

from mcpp import spill
from mcpp.cache import CacheBackend, SQLiteCache, hash_result, parse_ttl
from mcpp.cache.keys import function_hash, step_key
from mcpp.errors import WorkflowError
from mcpp.workflow.spec import StepSpec, WorkflowSpec
from mcpp.workflow.targets import resolve

__all__ = ["BUSY_TIMEOUT", "StepCache", "identities"]

BUSY_TIMEOUT = 2.0
"""Seconds a lookup or store waits for another process's lock before it counts as a miss
(it runs in the coordinator's event loop, so it must not wait long)."""

_log = logging.getLogger(__name__)


def identities(spec: WorkflowSpec) -> dict[str, str]:
    """Return step id -> :func:`function_hash` of its target, for every step with ``cache`` on.

    Imports the targets of those steps (with the spec's ``import_paths`` and ``main_path``), so
    call it in the supervisor, once per run, never in the coordinator. Steps with
    ``cache = false`` are left out.

    Raises :class:`~mcpp.errors.WorkflowError` naming the step (and the spec's source file, if
    any): field ``"cache"`` for a TTL :func:`mcpp.cache.parse_ttl` rejects, field ``"run"`` for
    a target that cannot be resolved.
    """
    found: dict[str, str] = {}
    for step in spec.steps:
        if step.cache is False:
            continue
        try:
            found[step.id] = _identity(spec, step)
        except WorkflowError as exc:
            if spec.source:
                exc.in_file(spec.source)
            raise
    return found


def _identity(spec: WorkflowSpec, step: StepSpec) -> str:
    parse_ttl(step.cache, step=step.id)
    try:
        fn = resolve(step.run, import_paths=spec.import_paths, main_path=spec.main_path)
    except WorkflowError as exc:
        raise WorkflowError(exc.reason, step=step.id, field="run") from exc
    return function_hash(fn)


class StepCache:
    """The cache of one run's steps, for the coordinator; never imports user code.

    ``identities`` is what :func:`identities` returned for ``spec`` in the supervisor;
    ``path`` is the SQLite cache file, or ``None`` to cache nothing (then nothing is opened and
    every :meth:`lookup` returns ``(None, None)``). ``clock`` gives the time for TTLs.

    Use it as a context manager, or call :meth:`open` and :meth:`close`. A cache that cannot be
    used (a file that is not an mcpp cache, a lock held too long, a disk error) never fails the
    run: the problem is logged and the step runs as on a miss.

    Raises :class:`~mcpp.errors.WorkflowError` for a bad TTL in ``spec`` and ``ValueError`` if,
    with a ``path``, ``identities`` does not name exactly the steps with ``cache`` on.
    """

    def __init__(
        self,
        spec: WorkflowSpec,
        identities: Mapping[str, str],
        path: str | os.PathLike[str] | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = None if path is None else Path(path)
        self._clock = clock
        self._identities: dict[str, str] = {}
        self._ttls: dict[str, float | None] = {}
        if self.path is not None:
            cached = {step.id: step for step in spec.steps if step.cache is not False}
            if set(identities) != set(cached):
                raise ValueError(
                    "identities must name exactly the cached steps: "
                    f"got {sorted(identities)}, expected {sorted(cached)}"
                )
            self._identities = dict(identities)
            self._ttls = {sid: parse_ttl(step.cache, step=sid) for sid, step in cached.items()}
        self._keys: dict[str, str] = {}
        self._backend: CacheBackend | None = None
        self._opened = False

    @property
    def enabled(self) -> bool:
        """Whether any step of this run is cached (a path was given and a step opted in)."""
        return bool(self._identities)

    def open(self) -> Self:
        """Open the cache file if any step is cached; return ``self``. Idempotent.

        A file that cannot be opened is logged and caching is off for this run.
        """
        if self._opened:
            return self
        self._opened = True
        if self.enabled and self.path is not None:
            try:
                self._backend = SQLiteCache(self.path, clock=self._clock, busy_timeout=BUSY_TIMEOUT)
            except (ValueError, OSError, sqlite3.Error) as exc:
                _log.warning(
                    "result cache %s unusable, caching off for this run: %s", self.path, exc
                )
        return self

    def close(self) -> None:
        """Close the cache file; idempotent. Remembered keys are kept."""
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def key(self, step_id: str) -> str | None:
        """Return the key :meth:`lookup` computed for ``step_id`` in this run, or ``None``."""
        return self._keys.get(step_id)

    def lookup(
        self, step_id: str, args: Mapping[str, Any], upstream: Mapping[str, bytes | msgspec.Raw]
    ) -> tuple[str | None, bytes | None]:
        """Return ``(key, cached result)`` for running ``step_id`` with these inputs.

        ``args`` are the step's arguments; ``upstream`` maps each upstream step id to its
        MessagePack-encoded result. ``key`` is ``None`` when the step is not cached (or caching
        is off for this run); the result is the cached MessagePack bytes on a hit, ``None`` on a
        miss (a cached ``None`` result is a hit: its bytes are ``b"\\xc0"``). The key is
        remembered, so a cached step's dependents hash its key rather than its result.

        Call it once per step, before the first attempt. Raises ``ValueError`` if the cache is
        enabled but was not opened.
        """
        identity = self._identities.get(step_id)
        if identity is None:
            return None, None
        if not self._opened:
            raise ValueError("StepCache.open() must be called first")
        if self._backend is None:
            return None, None
        tokens: dict[str, str] = {}
        for upstream_id, result in upstream.items():
            upstream_key = self._keys.get(upstream_id)
            if upstream_key is not None:
                tokens[upstream_id] = f"key:{upstream_key}"
            else:
                tokens[upstream_id] = f"result:{hash_result(spill.read(result))}"
        try:
            key = step_key(identity, args, tokens)
        except TypeError as exc:
            _log.warning("step %r is not cached: %s", step_id, exc)
            return None, None
        self._keys[step_id] = key
        try:
            hit = self._backend.get(key)
        except sqlite3.Error as exc:
            _log.warning("result cache lookup of step %r failed, running it: %s", step_id, exc)
            return key, None
        return key, None if hit is None else hit.value

    def store(self, step_id: str, key: str | None, result: bytes | msgspec.Raw) -> bool:
        """Store ``result`` (MessagePack bytes) of ``step_id`` under ``key``, with its TTL.

        ``key`` is what :meth:`lookup` returned; ``None`` (not cached) stores nothing. Returns
        whether the result was stored: ``False`` too for a result larger than the cache's byte
        bound or a cache error (logged, never raised).
        """
        if key is None or self._backend is None or step_id not in self._identities:
            return False
        try:
            data = spill.read(result)  # a large result is read from its file for the cache only
            return self._backend.put(key, data, step_id=step_id, ttl=self._ttls[step_id])
        except (sqlite3.Error, OSError, ValueError) as exc:
            _log.warning("result cache store of step %r failed: %s", step_id, exc)
            return False
