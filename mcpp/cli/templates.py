"""``mcpp templates ls|show`` and loading ``spawn NAME[@VERSION]``: templates on the command line.

The template folder is ``--dir``, else ``$MCPP_TEMPLATES``, else ``./templates``
(:func:`mcpp.workflow.templates.default_template_dir`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: ``mcpp --help`` stays fast
    from mcpp.workflow.spec import WorkflowSpec
    from mcpp.workflow.templates import Template, TemplateRegistry

__all__ = ["add_dir_option", "add_templates", "load_target", "looks_like_file"]

DIR_HELP = "template folder (default: $MCPP_TEMPLATES or ./templates)"


def add_dir_option(command: argparse.ArgumentParser) -> None:
    """Add ``--dir DIR``, the template folder, to ``command`` (``args.dir``, ``None`` if not
    given)."""
    command.add_argument("--dir", metavar="DIR", help=DIR_HELP)


def looks_like_file(arg: str) -> bool:
    """True if ``arg`` names a workflow file rather than a template ``NAME[@VERSION]``: it
    exists, contains a path separator or ends with a workflow file suffix."""
    from mcpp.workflow.bounded import FORMATS

    return (
        os.path.exists(arg)
        or os.sep in arg
        or "/" in arg
        or os.path.splitext(arg)[1].lower() in FORMATS
    )


def load_target(arg: str, params: Mapping[str, Any], *, folder: str | None = None) -> WorkflowSpec:
    """Load ``arg``: a workflow file, or else a template ``NAME[@VERSION]`` of ``folder``.

    Raises :class:`~mcpp.errors.WorkflowError` for an invalid workflow, an unknown template
    or version (naming the folder), and invalid parameters.
    """
    from mcpp.workflow.loader import load_workflow_spec
    from mcpp.workflow.templates import TemplateRegistry, default_template_dir

    if looks_like_file(arg):
        return load_workflow_spec(arg, params)
    template = TemplateRegistry(folder or default_template_dir()).find(arg)
    return load_workflow_spec(template.path, params)


def add_templates(commands: Any) -> None:
    """Add ``templates ls`` and ``templates show NAME[@VERSION]``."""
    templates = commands.add_parser("templates", help="list and show workflow templates")
    actions = templates.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = actions.add_parser("ls", help="list the templates, newest version first")
    ls.set_defaults(func=ls_command)
    show = actions.add_parser("show", help="show one template: parameters, steps, includes")
    show.set_defaults(func=show_command)
    show.add_argument("ref", metavar="NAME[@VERSION]", help="the template (default: newest)")
    for command in (ls, show):
        add_dir_option(command)
        command.add_argument("--json", action="store_true", help="print one JSON document")


def _registry(args: argparse.Namespace) -> TemplateRegistry:
    from mcpp.workflow.templates import TemplateRegistry, default_template_dir

    return TemplateRegistry(args.dir or default_template_dir())


def ls_command(args: argparse.Namespace) -> int:
    """List the templates; files that are not valid templates are reported on stderr."""
    registry = _registry(args)
    found = registry.templates()
    for problem in registry.problems:
        print(f"mcpp: skipped {problem}", file=sys.stderr)
    if args.json:
        print(json.dumps({"folder": registry.folder, "templates": [_row(t) for t in found]}))
        return 0
    if not found:
        where = os.path.abspath(registry.folder)
        print(
            f"no templates in {where} (--dir DIR or $MCPP_TEMPLATES names another folder)",
            file=sys.stderr,
        )
    width = max((len(t.ref) for t in found), default=0)
    for template in found:
        print(f"{template.ref:<{width}}  {template.description}".rstrip())
    return 0


def show_command(args: argparse.Namespace) -> int:
    """Show one template; an unknown template or version is a usage error (exit 2)."""
    from mcpp.workflow.params import plain_type

    template = _registry(args).find(args.ref)
    document = {
        **_row(template),
        "params": {name: spec.to_dict() for name, spec in template.params.items()},
        "steps": list(template.steps),
        "includes": list(template.includes),
    }
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    print(f"{template.ref}  ({template.path})")
    if template.description:
        print(f"  {template.description}")
    print("params:" if template.params else "params: none")
    for name, spec in template.params.items():
        facts: list[str] = [spec.type or f"{plain_type(spec.default)} (from its default)"]
        facts.append("required" if spec.required else f"default {spec.default!r}")
        if spec.choices:
            facts.append("one of " + ", ".join(map(repr, spec.choices)))
        if spec.pattern:
            facts.append(f"matching {spec.pattern!r}")
        line = f"  {name}: {'; '.join(facts)}"
        print(f"{line}  - {spec.description}" if spec.description else line)
    print("steps: " + (", ".join(template.steps) or "none"))
    if template.includes:
        print("includes: " + ", ".join(template.includes))
    return 0


def _row(template: Template) -> dict[str, Any]:
    return {
        "name": template.name,
        "version": template.version,
        "path": template.path,
        "description": template.description,
    }
