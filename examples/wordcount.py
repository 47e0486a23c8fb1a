"""Map-reduce word count: one ``count`` step per text file, one ``reduce`` step merging them.

Relative file names are looked up in ``examples/texts/``.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

__all__ = ["count", "reduce"]

TEXTS = Path(__file__).with_name("texts")


def count(file: str) -> dict[str, int]:
    """Return how often each lowercased word occurs in ``file``."""
    text = (TEXTS / file).read_text(encoding="utf-8")
    return dict(Counter(re.findall(r"[a-z']+", text.lower())))


def reduce(top: int = 10, **counts: dict[str, int]) -> dict[str, object]:
    """Merge the per-file counts; return the total and the ``top`` words, most frequent first.

    Ties are broken alphabetically, so the result does not depend on the order of the inputs.
    """
    total: Counter[str] = Counter()
    for partial in counts.values():
        total.update(partial)
    ranked = sorted(total.items(), key=lambda item: (-item[1], item[0]))
    return {"words": sum(total.values()), "distinct": len(total), "top": ranked[:top]}
