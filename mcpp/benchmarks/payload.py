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
from mcpp.benchmarks.common import (
    BenchmarkError,
    Figures,
    Task,
    Timing,
    base_parser,
    document,
    figure,
    output,
    span_baseline,
    span_mcpp,
    to_spec,
    warm_up,
)
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
    mcpp: dict[str, list[Timing]] = {key: [] for key in sizes}
    base: dict[str, list[Timing]] = {key: [] for key in sizes}
    for _ in range(args.repeat):
        for key, size in sizes.items():
            tasks = relay_chain(size, args.hops)
            spec = to_spec(tasks, name="payload", mode=mode, workers=args.workers)
            result, timing = span_mcpp(spec, timeout=args.timeout)
            if len(result.steps[tasks[-1].id].result) != size:
                raise BenchmarkError("the payload arrived with the wrong size")
            mcpp[key].append(timing)
            base[key].append(span_baseline(tasks, args.workers))

    def per_hop(runs: dict[str, list[Timing]], key: str, *, extra: bool = False) -> list[float]:
        empty = runs["0"] if extra else [Timing(0.0, 0.0)] * len(runs[key])
        return [1000 * (t.span - e.span) / args.hops for t, e in zip(runs[key], empty, strict=True)]

    return {
        key: {
            "wall_s": figure("s", [t.wall for t in mcpp[key]], [t.wall for t in base[key]]),
            "per_hop_ms": figure("ms", per_hop(mcpp, key), per_hop(base, key)),
            "extra_per_hop_ms": figure(
                "ms", per_hop(mcpp, key, extra=True), per_hop(base, key, extra=True)
            ),
        }
        for key in sizes
        if key != "0"
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
