"""Fan-out / fan-in: split a range into chunks, sum the squares of each chunk in parallel, join.

The result is deterministic: ``join`` returns the sum of ``i * i`` for ``i`` in ``range(n)``.
"""

from __future__ import annotations

import trio

__all__ = ["join", "split", "square_sum"]


def split(n: int, parts: int) -> list[list[int]]:
    """Return ``range(n)`` dealt round-robin into ``parts`` chunks."""
    return [list(range(start, n, parts)) for start in range(parts)]


async def square_sum(split: list[list[int]], index: int, delay: float = 0.0) -> int:
    """Return the sum of squares of chunk ``index`` of ``split``, after ``delay`` seconds."""
    await trio.sleep(delay)
    return sum(value * value for value in split[index])


def join(**parts: int) -> dict[str, object]:
    """Combine the partial sums (one keyword per upstream step) into the total."""
    return {"total": sum(parts.values()), "parts": dict(sorted(parts.items()))}
