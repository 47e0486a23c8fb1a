"""Step functions of the example templates (``etl`` and ``report``).

The templates name them ``etl_steps:FUNCTION``: a workflow file's folder is on the import path.
"""

from __future__ import annotations

__all__ = ["extract", "load", "summarize", "transform"]


def extract(rows: int, label: str) -> dict[str, object]:
    """Return ``rows`` numbers 0 .. rows-1 under ``label``."""
    return {"label": label, "values": list(range(rows))}


def transform(extract: dict[str, object], scale: float) -> dict[str, object]:
    """Multiply every value by ``scale``."""
    values = extract["values"]
    assert isinstance(values, list)
    return {"label": extract["label"], "values": [v * scale for v in values]}


def load(transform: dict[str, object], mode: str) -> dict[str, object]:
    """Reduce the values to one figure: their ``sum`` or their ``mean``."""
    values = transform["values"]
    assert isinstance(values, list)
    total = float(sum(values))
    figure = total if mode == "sum" else total / max(len(values), 1)
    return {"label": transform["label"], mode: figure}


def summarize(**loads: dict[str, object]) -> dict[str, object]:
    """Gather the loaded figures, one keyword per upstream step."""
    return {"reports": dict(sorted(loads.items()))}
