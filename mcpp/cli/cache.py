"""``mcpp cache ls|stats|clear``: inspect and invalidate the result cache.

The cache file is :func:`mcpp.cache.default_path` (``cache.sqlite3`` in ``$MCPP_HOME`` or
``./.mcpp``). ``ls`` and ``stats`` never create it: a missing file is an empty cache.

Exit codes: 0 done; 1 the file is not a usable mcpp cache; 2 usage (argparse, or a ``--key``
prefix that names several entries).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: ``mcpp --help`` stays fast
    from mcpp.cache import CacheBackend, CacheEntry, CacheStats

__all__ = ["add_cache", "clear_command", "ls_command", "stats_command"]

SHORT_KEY = 16
"""Hex digits of a key that ``ls`` shows; ``clear --key`` accepts any unique prefix."""


def add_cache(commands: Any) -> None:
    """Add ``cache ls [--json]``, ``cache stats [--json]`` and ``cache clear [...]``."""
    cache = commands.add_parser("cache", help="inspect or clear the result cache")
    actions = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")

    ls = actions.add_parser("ls", help="list cached results, oldest first")
    ls.set_defaults(func=ls_command)
    ls.add_argument("--json", action="store_true", help="print one JSON document")

    stats = actions.add_parser("stats", help="show sizes and hit/miss counters")
    stats.set_defaults(func=stats_command)
    stats.add_argument("--json", action="store_true", help="print one JSON document")

    clear = actions.add_parser("clear", help="remove cached results (all, by default)")
    clear.set_defaults(func=clear_command)
    which = clear.add_mutually_exclusive_group()
    which.add_argument("--step", metavar="ID", help="only the results of step ID")
    which.add_argument("--pattern", metavar="GLOB", help="only steps whose id matches GLOB")
    which.add_argument("--key", metavar="KEY", help="only the entry with KEY (or a unique prefix)")
    clear.add_argument("--json", action="store_true", help='print {"removed": N}')


def _with_cache(path: Path, action: Callable[[CacheBackend], int]) -> int:
    """Open the cache at ``path``, run ``action`` and return its exit code (1 if unusable)."""
    import sqlite3

    from mcpp.cache import open_cache

    try:
        with open_cache(path=path) as cache:
            return action(cache)
    except (ValueError, OSError, sqlite3.Error) as exc:
        print(f"mcpp: cache {path}: {exc}", file=sys.stderr)
        return 1


def _write_json(document: dict[str, Any]) -> None:
    import msgspec.json

    sys.stdout.buffer.write(msgspec.json.encode(document) + b"\n")


def ls_command(args: argparse.Namespace) -> int:
    """Run ``cache ls``: one line (or JSON object) per live entry; return the exit code."""
    from mcpp.cache import default_path

    path = default_path()

    def show(entries: list[CacheEntry]) -> int:
        if args.json:
            _write_json({"path": str(path), "entries": entries})
        elif not entries:
            print(f"no cached results in {path}")
        else:
            print(_table(entries))
        return 0

    if not path.exists():
        return show([])
    return _with_cache(path, lambda cache: show(cache.entries()))


def stats_command(args: argparse.Namespace) -> int:
    """Run ``cache stats``: entries, bytes and counters; return the exit code."""
    import msgspec

    from mcpp.cache import CacheStats, default_path

    path = default_path()

    def show(stats: CacheStats) -> int:
        if args.json:
            _write_json({"path": str(path), **msgspec.structs.asdict(stats)})
        else:
            counts = msgspec.structs.asdict(stats).items()
            rows = [("cache", str(path)), *((name, str(value)) for name, value in counts)]
            width = max(len(name) for name, _ in rows)
            print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
        return 0

    if not path.exists():
        return show(CacheStats(entries=0, bytes=0, hits=0, misses=0, evictions=0, expirations=0))
    return _with_cache(path, lambda cache: show(cache.stats()))


def clear_command(args: argparse.Namespace) -> int:
    """Run ``cache clear``: remove every entry, or those of ``--step``, ``--pattern`` or
    ``--key``; print how many were removed and return the exit code."""
    from mcpp.cache import default_path

    path = default_path()

    def report(removed: int) -> int:
        if args.json:
            _write_json({"removed": removed})
        else:
            print(f"removed {removed} cached result{'' if removed == 1 else 's'}")
        return 0

    def clear(cache: CacheBackend) -> int:
        if args.step is not None:
            return report(cache.invalidate_step(args.step))
        if args.pattern is not None:
            return report(cache.invalidate_pattern(args.pattern))
        if args.key is not None:
            keys = [entry.key for entry in cache.entries() if entry.key.startswith(args.key)]
            if len(keys) > 1:
                print(f"mcpp: key prefix {args.key!r} names {len(keys)} entries", file=sys.stderr)
                return 2
            removed = cache.invalidate(keys[0]) if keys else False
            return report(int(removed))
        return report(cache.clear())

    if not path.exists():
        return report(0)
    return _with_cache(path, clear)


def _table(entries: list[CacheEntry]) -> str:
    header = ("KEY", "STEP", "SIZE", "HITS", "CREATED", "LAST USED", "EXPIRES")
    rows = [header] + [
        (
            entry.key[:SHORT_KEY],
            entry.step_id,
            _size(entry.size),
            str(entry.access_count),
            _when(entry.created_at),
            _when(entry.last_access),
            "never" if entry.expires_at is None else _when(entry.expires_at),
        )
        for entry in entries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024**2:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024**2:.1f} MiB"


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
