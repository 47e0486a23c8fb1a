"""Run every benchmark with modest sizes and print one JSON document of them all.

Each benchmark runs as its own process (``python -m mcpp.benchmarks.NAME --json`` with the
sizes of :data:`MODEST`), so one cannot disturb the next. About four minutes on 2 cores. The
README's table is rendered from this output by ``scripts/benchmarks_readme.py``.

    python -m mcpp.benchmarks.all [--smoke] [--only a,b] [--modes per_step,pool]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

import msgspec

from mcpp.benchmarks.common import comma_list
from mcpp.benchmarks.document import Document, emit

__all__ = ["BENCHMARKS", "MODEST", "Suite", "main", "parser", "run", "run_one"]

BENCHMARKS = ("dispatch", "scaling", "payload", "memory", "startup", "faults", "peers")

# The sizes where they fit in a few minutes on 2 cores: dispatch and the memory leak
# check at full size; scaling on 2 workers only (the figure; alone it runs 1..cpus).
MODEST: Mapping[str, tuple[str, ...]] = {
    "dispatch": ("--repeat", "3", "--n", "1000", "--chain", "200", "--layers", "10",
                 "--width", "50", "--per-step-n", "20", "--per-step-chain", "10"),
    "scaling": ("--repeat", "2", "--steps", "8", "--step-s", "0.5", "--worker-counts", "2"),
    "payload": ("--repeat", "5", "--hops", "4", "--sizes-mib", "1,10"),  # 4 relays: the issue's
    "memory": ("--repeat", "2", "--workers", "2", "--steps", "100000",
               "--per-step-steps", "40"),
    "startup": ("--repeat", "3",),
    "faults": ("--repeat", "2",),
    "peers": ("--repeat", "3",),  # Dask and Ray only where installed (uv run --group bench)
}  # fmt: skip


class Suite(msgspec.Struct, kw_only=True):
    """Every benchmark's document, with the seconds each took and the load around the run."""

    took_s: float
    load_before: float
    load_after: float
    elapsed_s: dict[str, float]
    documents: list[Document]


def parser(*, add_help: bool = True) -> argparse.ArgumentParser:
    """The options of the whole run."""
    p = argparse.ArgumentParser(
        prog="python -m mcpp.benchmarks.all",
        description="Run every benchmark; print their documents as JSON.",
        add_help=add_help,
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition")
    only = comma_list(choices=BENCHMARKS)
    p.add_argument("--only", type=only, default=list(BENCHMARKS), help="benchmarks (all)")
    p.add_argument("--modes", default="per_step,pool", help="actor modes (per_step,pool)")
    return p


def run_one(name: str, extra: Sequence[str]) -> Document:
    """Run benchmark ``name`` in a new process with ``extra`` options; return its document.

    Raises RuntimeError with the benchmark's standard error if it fails.
    """
    cmd = [sys.executable, "-m", f"mcpp.benchmarks.{name}", "--json", *extra]
    done = subprocess.run(cmd, capture_output=True, check=False)
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace")[-4000:]
        raise RuntimeError(f"{name} exited {done.returncode}:\n{stderr}")
    return msgspec.json.decode(done.stdout, type=Document)


def run(args: argparse.Namespace) -> Suite:
    """Run the benchmarks ``args`` name (see :func:`parser`), reporting progress on stderr."""
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    elapsed: dict[str, float] = {}
    docs = []
    for name in args.only:
        extra = ["--repeat", "1", "--smoke"] if args.smoke else list(MODEST[name])
        print(f"running {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        docs.append(run_one(name, [*extra, "--modes", args.modes]))
        elapsed[name] = round(time.perf_counter() - started, 1)
        print(f"{name}: {elapsed[name]} s", file=sys.stderr, flush=True)
    return Suite(
        took_s=round(time.perf_counter() - began, 1),
        load_before=round(load_before, 2),
        load_after=round(os.getloadavg()[0], 2),
        elapsed_s=elapsed,
        documents=docs,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks and print the :class:`Suite` as JSON; return the exit code."""
    suite = run(parser().parse_args(argv))
    emit(suite)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
