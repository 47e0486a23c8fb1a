"""``mcpp graph``: a workflow's step graph as Graphviz DOT, Mermaid or JSON.

``graph FILE`` (or a template ``NAME[@VERSION]``) draws a workflow file, validated as ``spawn``
does: the step modules are imported (their top-level code runs); ``graph --run RUN_ID``
draws a journalled run with each step coloured by its status (read from the journal, see
:mod:`mcpp.supervisor.journal`); ``pending`` and ``running`` steps of an unfinished run keep
those states.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from mcpp.cli.templates import add_dir_option, load_target

if TYPE_CHECKING:  # imported where used: ``mcpp --help`` stays fast
    from mcpp.dag import StepState
    from mcpp.supervisor.results import StepResult
    from mcpp.workflow.spec import WorkflowSpec

__all__ = ["FORMATS", "add_graph", "render", "step_states"]

FORMATS = ("dot", "mermaid", "json")
EXIT_USAGE = 2


def add_graph(commands: Any) -> None:
    """Add ``graph FILE|--run RUN_ID [--format dot|mermaid|json]``."""
    graph = commands.add_parser(
        "graph",
        help="draw a workflow's step graph (DOT, Mermaid, JSON); FILE is validated as by "
        "spawn --dry-run, importing its step modules",
    )
    graph.set_defaults(func=graph_command)
    source = graph.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", help="workflow file or template NAME[@VERSION]")
    source.add_argument(
        "--run", metavar="RUN_ID", help="a journalled run, steps coloured by status"
    )
    graph.add_argument("--format", choices=FORMATS, default="dot", help="output format (dot)")
    graph.add_argument(
        "--param", action="append", default=[], metavar="K=V", help="set a parameter (FILE)"
    )
    add_dir_option(graph)


def step_states(steps: dict[str, StepResult]) -> dict[str, StepState]:
    """The run-result status of each step (one vocabulary: :class:`mcpp.status.StepState`)."""
    from mcpp.status import StepState

    return {step_id: StepState(record.status) for step_id, record in steps.items()}


def render(spec: WorkflowSpec, output: str, states: dict[str, StepState] | None = None) -> str:
    """Return the graph of ``spec`` in ``output`` (one of :data:`FORMATS`)."""
    from mcpp.dag import Graph, export

    graph = Graph({step.id: step.depends_on for step in spec.steps})
    if output == "dot":
        return export.to_dot(graph, states, name=spec.name)
    if output == "mermaid":
        return export.to_mermaid(graph, states)
    if output == "json":
        return export.to_json(graph, states) + "\n"
    raise ValueError(f"unknown graph format {output!r}")


def graph_command(args: argparse.Namespace) -> int:
    """Print the graph; 2 for an invalid workflow or an unknown run."""
    from mcpp.home import RunIdError, mcpp_home
    from mcpp.supervisor.journal import Journal, JournalError
    from mcpp.workflow.params import parse_param_texts

    if args.run is None:
        spec = load_target(args.file, parse_param_texts(args.param), folder=args.dir)
        states = None
    else:
        try:
            journal = Journal.open_readonly()  # creates nothing
            if journal is None:
                raise JournalError(f"no run {args.run!r}: no journal in {mcpp_home().absolute()}")
            with journal:
                run = journal.load(journal.resolve(args.run))
        except (JournalError, RunIdError) as exc:
            print(f"mcpp: {exc}", file=sys.stderr)
            return EXIT_USAGE
        spec, states = run.spec, step_states(run.result.steps)
    sys.stdout.write(render(spec, args.format, states))
    return 0
