"""Steps of examples/etl.toml, the workflow README.md uses to show the file format."""

from __future__ import annotations


def extract(rows: int) -> list[int]:
    """The numbers 0 .. rows-1 (stands for reading a source)."""
    return list(range(rows))


def transform(extract: list[int]) -> dict[str, int]:
    """Count and sum the extracted numbers."""
    return {"count": len(extract), "sum": sum(extract)}
