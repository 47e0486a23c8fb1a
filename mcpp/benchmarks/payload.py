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
from typing import Any

from mcpp.benchmarks import report, workloads
from mcpp.benchmarks.common import (
    Span,
    Task,
    base_parser,
    document,
    figure,
    peers_available,
    run_mcpp,
    selected_modes,
    span_baseline,
    span_peer,
    to_spec,
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


def measure_mode(args: argparse.Namespace, mode: ActorMode) -> dict[str, Any]:
    """Wall time and per-hop payload cost of every size, in ``mode``."""
    peers = peers_available()
    systems = ["mcpp", "baseline", *peers]
    sizes = {f"{mib:g}MiB": int(mib * MIB) for mib in args.sizes_mib}
    keys = ["0", *sizes]
    walls: dict[str, dict[str, list[float]]] = {k: {s: [] for s in systems} for k in keys}
    spans: dict[str, dict[str, list[float]]] = {k: {s: [] for s in systems} for k in keys}

    def record(key: str, system: str, wall: float, span: float) -> None:
        walls[key][system].append(wall)
        spans[key][system].append(span)

    def run(key: str, size: int) -> None:
        tasks = relay_chain(size, args.hops)
        spec = to_spec(tasks, name="payload", mode=mode, workers=args.workers)
        clock = Span()
        result, wall = run_mcpp(spec, timeout=args.timeout, on_event=clock)
        if len(result.steps[tasks[-1].id].result) != size:
            raise ValueError("the payload arrived with the wrong size")
        record(key, "mcpp", wall, clock.seconds)
        record(key, "baseline", *span_baseline(tasks, args.workers))
        for peer in peers:
            record(key, peer, *span_peer(peer, tasks, args.workers))

    for _ in range(args.repeat):
        run("0", 0)
        for key, size in sizes.items():
            run(key, size)
    out: dict[str, Any] = {}
    empty = spans["0"]
    for key in sizes:
        got = walls[key]
        per_hop = {s: [1000 * w / args.hops for w in spans[key][s]] for s in systems}
        extra = {
            s: [1000 * (w - e) / args.hops for w, e in zip(spans[key][s], empty[s], strict=True)]
            for s in systems
        }
        out[key] = {
            "wall_s": figure("s", got["mcpp"], got["baseline"], {p: got[p] for p in peers}),
            "per_hop_ms": figure(
                "ms", per_hop["mcpp"], per_hop["baseline"], {p: per_hop[p] for p in peers}
            ),
            "extra_per_hop_ms": figure(
                "ms", extra["mcpp"], extra["baseline"], {p: extra[p] for p in peers}
            ),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its document; return the exit code."""
    args = parser().parse_args(argv)
    if args.smoke:
        args.sizes_mib, args.hops = [1.0], 1
    notes: dict[str, Any] = {
        "per_hop_ms": "in-run time of the chain with the payload / hops (step overhead "
        "included); in-run: first step started .. run finished (baseline: warm pool)",
        "extra_per_hop_ms": "(in-run time with the payload - with an empty one) / hops",
        "wall_s": "the whole run, start-up included; journal off",
    }
    figures: dict[str, Any] = {}
    for mode, reason in selected_modes(args, notes).items():
        figures[mode] = None if reason is not None else measure_mode(args, mode)
    report.output(document("payload", args, figures, notes), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
