"""A diamond: ``source`` feeds ``left`` and ``right``, which ``merge`` combines.

With ``x`` as the source value, ``merge`` returns ``(x + 1) * (x * 2)``.
"""

from __future__ import annotations

__all__ = ["left", "merge", "right", "source"]


def source(x: int) -> int:
    """Return ``x``."""
    return x


def left(source: int) -> int:
    """Return ``source + 1``."""
    return source + 1


async def right(source: int) -> int:
    """Return ``source * 2`` (an async step)."""
    return source * 2


def merge(left: int, right: int) -> int:
    """Return ``left * right``."""
    return left * right
