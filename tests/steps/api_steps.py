"""A workflow built with the decorator API, importable from step processes."""

from __future__ import annotations

import mcpp

wf = mcpp.Workflow("api", max_concurrent=2)


@wf.step(timeout=30, retries=1)
def extract(rows: int = 10) -> list[int]:
    return list(range(rows))


@wf.step(depends_on=[extract])
def transform(extract: list[int]) -> int:
    return 2 * sum(extract)
