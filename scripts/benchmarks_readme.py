"""Run every benchmark and write the README's Benchmarks section (a dev script, not installed).

    uv run python scripts/benchmarks_readme.py [README.md] [--markdown PATH] [--json PATH]
                                               [--from PATH] [--smoke] [--only a,b] [--modes m]

Runs ``mcpp.benchmarks.all`` (the options after ``--from`` are its own), renders one Markdown
table of every figure (medians, ratio mcpp / baseline, the issue's target and whether it is
met) and the comparison with other systems, and prints it. The comparison is the ``peers``
benchmark's document when the run has one (every system measured in the run, the same way);
otherwise the reference figures of ``docs/peers.toml``. With a README path it rewrites the
lines between :data:`BEGIN` and :data:`END` (kept) and nothing else. ``--json PATH`` saves the
run; ``--from PATH`` renders a saved run instead of running the benchmarks.
"""

from __future__ import annotations

import argparse
import datetime
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

from mcpp.benchmarks import all as bench_all
from mcpp.benchmarks.document import Document, Figure, leaves, quantity

BEGIN = "<!-- benchmarks:begin -->"
END = "<!-- benchmarks:end -->"
PEERS = Path(__file__).resolve().parent.parent / "docs" / "peers.toml"

EXPLAIN = (
    "Medians over the repetitions (each benchmark's `--json` has min/median/max). Baseline: "
    "stdlib `ProcessPoolExecutor` driven by a plain DAG loop, measured in the same run; "
    "ratio = mcpp / baseline. Target: the issue's, for mcpp's median. Dispatch, scaling "
    "and payload times are in-run (first step started .. run finished; the baseline's "
    "pool started and warm), start-up excluded; dispatch runs with the journal on. "
    "`wall_s` is the whole run, start-up included."
)


class Workload(msgspec.Struct, forbid_unknown_fields=True):
    """A row of the comparison: which figure of the run, and the peers' reference figures."""

    name: str
    benchmark: str
    figure: str
    unit: str
    peers: dict[str, float]


class Peers(msgspec.Struct, forbid_unknown_fields=True):
    """``docs/peers.toml``: the comparison's note, its peer columns and its rows."""

    note: str
    columns: list[str]
    workload: list[Workload]


def row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def head(cells: Sequence[str]) -> list[str]:
    return [row(cells), "|" + "---|" * len(cells)]


def figure_cells(fig: Figure) -> list[str]:
    """mcpp, baseline, ratio, target, met: the cells of one figure."""
    base = "n/a" if fig.baseline is None else quantity(fig.baseline.median, fig.unit)
    ratio = "" if fig.ratio is None else f"{fig.ratio:.3g}x"
    want = met = ""
    if fig.target is not None:
        want = f"{fig.target.op} {quantity(fig.target.value, fig.unit)}"
        met = "yes" if fig.meets_target else "**no**"
    return [quantity(fig.mcpp.median, fig.unit), base, ratio, want, met]


def markdown(docs: Sequence[Document]) -> str:
    """One table of every figure of ``docs``."""
    lines = head(["benchmark", "figure", "mcpp", "baseline", "mcpp / baseline", "target", "met"])
    for doc in docs:
        for path, fig in leaves(doc.figures):
            label = path.replace("/", " / ")
            lines.append(row([doc.benchmark, label, *figure_cells(fig)]))
    return "\n".join(lines) + "\n"


def find(docs: Sequence[Document], benchmark: str, pattern: str) -> Figure | None:
    """The figure of ``benchmark`` whose path matches ``pattern`` in full, or None."""
    for doc in docs:
        if doc.benchmark == benchmark:
            for path, fig in leaves(doc.figures):
                if re.fullmatch(pattern, path):
                    return fig
    return None


def comparison(docs: Sequence[Document], peers: Peers) -> str:
    """This run's mcpp and baseline beside the peers' reference figures; a dash for a figure
    the run lacks."""
    lines = head(["workload", "mcpp (this run)", "stdlib baseline (this run)", *peers.columns])
    for work in peers.workload:
        fig = find(docs, work.benchmark, work.figure)
        mine = "-" if fig is None else quantity(fig.mcpp.median, fig.unit)
        base = (
            "-" if fig is None or fig.baseline is None else quantity(fig.baseline.median, fig.unit)
        )
        known = [
            quantity(work.peers[p], work.unit) if p in work.peers else "" for p in peers.columns
        ]
        lines.append(row([work.name, mine, base, *known]))
    return "\n".join(lines) + "\n"


PEER_NAMES = {"dask": "Dask distributed (this run)", "ray": "Ray (this run)"}
MEASURED_NOTE = (
    "Every system measured in this run by `python -m mcpp.benchmarks.peers` (2 worker "
    "processes each; mcpp in pool mode, journalled). *Whole-run* figures include starting and "
    "stopping the system, *in-run* ones start at the first submission to warm workers. "
    "Higher is better except for s, ms and MiB."
)


def measured(doc: Document) -> str:
    """The peers benchmark's figures as a table: a row a workload, a column a system."""
    names = sorted({name for _, fig in leaves(doc.figures) for name in fig.peers or {}})
    lines = head(["workload", "mcpp", "stdlib baseline", *(PEER_NAMES.get(n, n) for n in names)])
    for path, fig in leaves(doc.figures):
        label = path.removeprefix("pool/").replace("/", ", ").replace("_", " ")
        base = "-" if fig.baseline is None else quantity(fig.baseline.median, fig.unit)
        others = [
            quantity(fig.peers[n].median, fig.unit) if fig.peers and n in fig.peers else "-"
            for n in names
        ]
        lines.append(row([label, quantity(fig.mcpp.median, fig.unit), base, *others]))
    skipped = [f"{name}: {doc.notes[name]}" for name in ("dask", "ray") if name in doc.notes]
    return "\n".join(lines) + "\n" + ("\n" + "; ".join(skipped) + "\n" if skipped else "")


def section(suite: bench_all.Suite, command: str, peers: Peers) -> str:
    """The README's section: the command, date and machine, the two tables."""
    machine = suite.documents[-1].machine
    packages = ", ".join(f"{k} {v}" for k, v in machine.packages.items())
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"Generated by `{command}` on {date}, {suite.took_s:.0f} s in all.",
        f"Machine: {machine.cpu_count} CPUs, Python {machine.python} ({machine.platform}); "
        f"{packages}; load average {suite.load_before:.2f} before, {suite.load_after:.2f} after.",
        EXPLAIN,
        markdown([doc for doc in suite.documents if doc.benchmark != "peers"]),
    ]
    ran = [doc for doc in suite.documents if doc.benchmark == "peers"]
    if ran:
        parts += [f"**Compared with Dask and Ray.** {MEASURED_NOTE}", measured(ran[-1])]
    else:
        parts += [
            f"**Compared with Ray, Dask and Prefect.** {peers.note}",
            comparison(suite.documents, peers),
        ]
    return "\n\n".join(part.rstrip("\n") for part in parts) + "\n"


def replace_section(text: str, body: str) -> str:
    """Return ``text`` with the lines between :data:`BEGIN` and :data:`END` replaced by
    ``body``. Raises ValueError unless each marker is on a line of its own exactly once,
    BEGIN first."""
    lines = text.splitlines(keepends=True)
    stripped = [line.rstrip("\r\n") for line in lines]
    if stripped.count(BEGIN) != 1 or stripped.count(END) != 1:
        raise ValueError(f"need exactly one line {BEGIN!r} and one line {END!r}")
    begin, end = stripped.index(BEGIN), stripped.index(END)
    if begin > end:
        raise ValueError(f"{END!r} comes before {BEGIN!r}")
    body = body if body.endswith("\n") else body + "\n"
    return "".join([*lines[: begin + 1], body, *lines[end:]])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/benchmarks_readme.py",
        description="Run every benchmark; print the README's section, or write it into README.",
        parents=[bench_all.parser(add_help=False)],
    )
    p.add_argument("readme", nargs="?", help=f"rewrite this file between {BEGIN} and {END}")
    p.add_argument("--markdown", metavar="PATH", help="also write the section here")
    p.add_argument("--json", metavar="PATH", help="save the run (mcpp.benchmarks.all's JSON)")
    p.add_argument("--from", dest="saved", metavar="PATH", help="render this saved run")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    peers = msgspec.toml.decode(PEERS.read_bytes(), type=Peers)
    if args.readme:
        replace_section(Path(args.readme).read_text(), "")  # fail now, not after minutes
    if args.saved:
        suite = msgspec.json.decode(Path(args.saved).read_bytes(), type=bench_all.Suite)
    else:
        suite = bench_all.run(args)
    if args.json:
        Path(args.json).write_bytes(msgspec.json.format(msgspec.json.encode(suite)) + b"\n")
    command = shlex.join(["uv", "run", "python", "scripts/benchmarks_readme.py", *argv])
    text = section(suite, command, peers)
    print(text, end="")
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.readme:
        path = Path(args.readme)
        path.write_text(replace_section(path.read_text(), text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
