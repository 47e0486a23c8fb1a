"""Payload cost: passing a large ``bytes`` result from a step to its dependent.

A producer (``make_bytes(size)``) and ``--hops`` relays that return their upstream result, so
the payload crosses ``hops`` edges, timed in-run (:class:`~mcpp.benchmarks.common.Span`). The
same chain with an empty payload runs in each repetition: ``extra_per_hop_ms`` is the cost of
moving the payload once, free of the per-step overhead ``dispatch`` measures. Journal off.
Issue 14's targets are for that figure at 10 MiB (:data:`TARGETS`).

    python -m mcpp.benchmarks.payload [--sizes-mib 1,10,100] [--hops H] [--repeat R] [--json]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mcpp.benchmarks import common, workloads
from mcpp.benchmarks.document import Figures, Target
from mcpp.workflow.spec import ActorMode

__all__ = ["TARGETS", "main", "measure_mode", "parser", "relay_chain"]

MIB = 1 << 20
TARGETS: dict[ActorMode, Target] = {"pool": Target("<=", 10.0), "per_step": Target("<=", 20.0)}
"""Issue 14's targets for ``10MiB`` ``extra_per_hop_ms``, by mode."""


def parser() -> argparse.ArgumentParser:
    """The options of this benchmark."""
    p = common.base_parser("payload", "Time to pass large results on.", workers=common.CPUS)
    sizes = common.comma_list(float)
    p.add_argument(
        "--sizes-mib", type=sizes, default=[1.0, 10.0, 100.0], help="payload MiB (1,10,100)"
    )
    p.add_argument("--hops", type=int, default=4, help="relays, each one hop (4, the issue's)")
    return p


def relay_chain(size: int, hops: int) -> list[common.Task]:
    """A producer of ``size`` bytes followed by ``hops`` relays."""
    tasks = [common.Task("produce", workloads.make_bytes, {"size": size})]
    for i in range(hops):
        tasks.append(common.Task(f"relay{i}", workloads.relay, deps=(tasks[-1].id,)))
    return tasks


def measure_mode(args: argparse.Namespace, mode: ActorMode) -> Figures:
    """Wall time and per-hop payload cost of every size, in ``mode``."""
    sizes = {"0": 0, **{f"{mib:g}MiB": int(mib * MIB) for mib in args.sizes_mib}}
    runs = common.compare(
        args, mode, {k: (relay_chain(n, args.hops), args.workers) for k, n in sizes.items()}
    )
    empty = runs.pop("0")

    def less(got: list[common.Timing], zero: list[common.Timing]) -> list[common.Timing]:
        """``got`` with the span of the same repetition's empty chain taken off."""
        return [common.Timing(t.wall, t.span - e.span) for t, e in zip(got, zero, strict=True)]

    hops: int = args.hops

    def per_hop(t: common.Timing) -> float:
        return 1000 * t.span / hops

    return {
        key: {
            "wall_s": run.figure("s", lambda t: t.wall),
            "per_hop_ms": run.figure("ms", per_hop),
            "extra_per_hop_ms": common.Runs(
                less(run.mcpp, empty.mcpp), less(run.baseline, empty.baseline)
            ).figure("ms", per_hop, target=TARGETS[mode] if key == "10MiB" else None),
        }
        for key, run in runs.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its document; return the exit code."""
    args = parser().parse_args(argv)
    if args.smoke:
        args.sizes_mib, args.hops = [1.0], 1
    notes = {
        "in_run": common.IN_RUN,
        "per_hop_ms": "in-run time of the chain with the payload / hops (step overhead included)",
        "extra_per_hop_ms": "(in-run time with the payload - with an empty one) / hops",
        "wall_s": f"{common.WALL_S}; journal off",
    }
    common.warm_up(args)
    figures = {mode: measure_mode(args, mode) for mode in args.modes}
    return common.finish("payload", args, figures, notes)


if __name__ == "__main__":
    raise SystemExit(main())
