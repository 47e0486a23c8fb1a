"""Step functions for the result cache tests: each execution appends its name to ``log``."""

from __future__ import annotations

from pathlib import Path


def _ran(log: str, name: str) -> None:
    with Path(log).open("a") as file:
        file.write(name + "\n")


def numbers(n: int, log: str) -> list[int]:
    _ran(log, "numbers")
    return list(range(n))


def total(numbers: list[int], log: str) -> int:
    _ran(log, "total")
    return sum(numbers)


def nothing(total: int, log: str) -> None:
    _ran(log, "nothing")


def report(total: int, log: str) -> str:
    _ran(log, "report")
    return f"total={total}"
