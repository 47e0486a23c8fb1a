"""Run every benchmark with modest sizes and print one Markdown table (the README's).

Each benchmark runs as its own process (``python -m mcpp.benchmarks.NAME --json`` with the
sizes of :data:`MODEST`), so one cannot disturb the next. The table has one row per figure:
medians, and the ratio mcpp / baseline (the baseline is measured in the same run). About three
minutes on 2 cores in per-step mode alone.

    python -m mcpp.benchmarks.all [--markdown PATH] [--json PATH] [--smoke] [--only a,b]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mcpp.benchmarks.common import machine_info
from mcpp.benchmarks.report import markdown

__all__ = ["BENCHMARKS", "MODEST", "main", "parser", "run_one", "table"]

BENCHMARKS = ("dispatch", "scaling", "payload", "memory", "startup", "faults")

MODEST: Mapping[str, tuple[str, ...]] = {
    "dispatch": (
        "--repeat", "3", "--n", "100", "--layers", "10", "--width", "50",
        "--per-step-n", "6", "--per-step-layers", "3", "--per-step-width", "3",
    ),
    "scaling": ("--repeat", "2", "--steps", "4", "--step-s", "0.25"),
    "payload": ("--repeat", "2", "--hops", "1", "--sizes-mib", "1,10"),
    "memory": ("--repeat", "2", "--workers", "2", "--leak-steps", "1000",
               "--per-step-leak-steps", "12"),
    "startup": ("--repeat", "3",),
    "faults": ("--repeat", "2",),
}  # fmt: skip


def parser() -> argparse.ArgumentParser:
    """The options of the whole run."""
    p = argparse.ArgumentParser(
        prog="python -m mcpp.benchmarks.all", description="Run every benchmark; print a table."
    )
    p.add_argument("--markdown", metavar="PATH", help="also write the Markdown table here")
    p.add_argument("--json", metavar="PATH", help="write every benchmark's document here")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition")
    p.add_argument(
        "--only",
        type=lambda text: [n for n in text.split(",") if n],
        default=list(BENCHMARKS),
        help="benchmarks to run, comma-separated (all)",
    )
    p.add_argument("--modes", default="per_step,pool", help="actor modes (per_step,pool)")
    return p


def run_one(name: str, extra: Sequence[str]) -> dict[str, Any]:
    """Run benchmark ``name`` in a new process with ``extra`` options; return its document.

    Raises RuntimeError with the benchmark's standard error if it fails.
    """
    cmd = [sys.executable, "-m", f"mcpp.benchmarks.{name}", "--json", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{name} exited {done.returncode}:\n{done.stderr[-4000:]}")
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def table(docs: Sequence[Mapping[str, Any]], took: float) -> str:
    """The Markdown of the whole run: the machine, the table, the notes of unmeasured modes."""
    machine = machine_info()
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items())
    lines = [
        f"Measured on {machine['cpu_count']} CPUs, Python {machine['python']} "
        f"({machine['platform']}), {packages}; load average {machine['load_average'][0]} "
        f"at the end; {took:.0f} s in all. Medians; baseline = stdlib ProcessPoolExecutor "
        "driven by a plain DAG loop, measured in the same run; ratio = mcpp / baseline.",
        "",
        markdown(docs),
    ]
    seen: set[str] = set()
    for doc in docs:
        for key, note in doc.get("notes", {}).items():
            if key.endswith("_unavailable") and note not in seen:
                seen.add(note)
                lines.append(f"- {key.removesuffix('_unavailable')} mode: {note}")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks, print the table, write the files; return the exit code."""
    args = parser().parse_args(argv)
    unknown = sorted(set(args.only) - set(BENCHMARKS))
    if unknown:
        parser().error(f"unknown benchmarks: {', '.join(unknown)}")
    began = time.perf_counter()
    docs = []
    for name in args.only:
        extra = ["--repeat", "1", "--smoke"] if args.smoke else list(MODEST[name])
        print(f"running {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        docs.append(run_one(name, [*extra, "--modes", args.modes]))
        docs[-1]["elapsed_s"] = round(time.perf_counter() - started, 1)
        print(f"{name}: {docs[-1]['elapsed_s']} s", file=sys.stderr, flush=True)
    text = table(docs, time.perf_counter() - began)
    print(text, end="")
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(docs, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
