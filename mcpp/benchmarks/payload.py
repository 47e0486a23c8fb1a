"""Payload cost: passing a large ``bytes`` result from a step to its dependent.

A chain of a producer (``make_bytes(size)``) and ``--hops`` relays (each returns its upstream
result unchanged), so the payload crosses ``hops`` step-to-step edges (and finally reaches the
supervisor). Times are in-run (:class:`~mcpp.benchmarks.common.Span`: first step started ..
run finished, start-up left out; the baseline's pool started and warm). ``per_hop_ms`` = in-run
time of the chain / hops; the same chain with an empty payload runs in the same repetition, and
``extra_per_hop_ms`` = (in-run time with the payload - with an empty one) / hops is the cost of
moving the payload once, free of the per-step overhead that ``dispatch`` measures. ``wall_s``
is the whole run, start-up included. The journal is off.

    python -m mcpp.benchmarks.payload [--sizes-mib 1,10] [--hops H] [--repeat R] [--json]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from mcpp.benchmarks import workloads
from mcpp.benchmarks.common import Runs, Task, Timing, base_parser, compare, warm_up
from mcpp.benchmarks.document import Figures, document, output
from mcpp.workflow.spec import ActorMode

__all__ = ["main", "measure_mode", "parser", "relay_chain"]

MIB = 1 << 20


def parser() -> argparse.ArgumentParser:
    """The options of this benchmark."""
    p = base_parser("payload", "Time to pass 1 MiB and 10 MiB results from step to step.")
    p.add_argument(
        "--sizes-mib",
        type=lambda text: [float(x) for x in text.split(",") if x],
        default=[1.0, 10.0],
        help="payload sizes in MiB, comma-separated (1,10)",
    )
    p.add_argument("--hops", type=int, default=3, help="step-to-step hops per chain (3)")
    p.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="workers / max_concurrent"
    )
    return p


def relay_chain(size: int, hops: int) -> list[Task]:
    """A producer of ``size`` bytes followed by ``hops`` relays."""
    tasks = [Task("produce", workloads.make_bytes, {"size": size})]
    for i in range(hops):
        tasks.append(Task(f"relay{i}", workloads.relay, deps=(tasks[-1].id,)))
    return tasks


def measure_mode(args: argparse.Namespace, mode: ActorMode) -> Figures:
    """Wall time and per-hop payload cost of every size, in ``mode``."""
    sizes = {"0": 0, **{f"{mib:g}MiB": int(mib * MIB) for mib in args.sizes_mib}}
    runs = compare(
        args, mode, {k: (relay_chain(n, args.hops), args.workers) for k, n in sizes.items()}
    )
    empty = runs.pop("0")

    def less(got: list[Timing], zero: list[Timing]) -> list[Timing]:
        """``got`` with the span of the same repetition's empty chain taken off."""
        return [Timing(t.wall, t.span - e.span) for t, e in zip(got, zero, strict=True)]

    hops: int = args.hops

    def per_hop(t: Timing) -> float:
        return 1000 * t.span / hops

    return {
        key: {
            "wall_s": run.figure("s", lambda t: t.wall),
            "per_hop_ms": run.figure("ms", per_hop),
            "extra_per_hop_ms": Runs(
                less(run.mcpp, empty.mcpp), less(run.baseline, empty.baseline)
            ).figure("ms", per_hop),
        }
        for key, run in runs.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its document; return the exit code."""
    args = parser().parse_args(argv)
    if args.smoke:
        args.sizes_mib, args.hops = [1.0], 1
    notes = {
        "per_hop_ms": "in-run time of the chain with the payload / hops (step overhead "
        "included); in-run: first step started .. run finished (baseline: warm pool)",
        "extra_per_hop_ms": "(in-run time with the payload - with an empty one) / hops",
        "wall_s": "the whole run, start-up included; journal off",
    }
    warm_up(args)
    figures = {mode: measure_mode(args, mode) for mode in args.modes}
    output(document("payload", args, figures, notes), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
