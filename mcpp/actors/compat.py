"""Adjustments to tractor 0.1.0a5 internals, all in one place.

- tractor 0.1.0a5 uses ``trio.MultiError``, deprecated in the trio it needs, and trio warns in
  every process that uses it; the filters apply here and travel to children through
  ``PYTHONWARNINGS``.
- The coordinator starts step and worker actors through tractor's 'forkserver' start method
  (:func:`use_forkserver`); the supervisor starts the coordinator with 'trio'.
- tractor formats every message it sends or receives into log lines, even with logging off
  (~25 us per message, ~0.25 s for a 10 MiB payload): :func:`strip_hot_logging` recompiles
  the four methods on that path without those calls. It also keeps the run secret out of
  tractor's logs whatever log level is set.
- tractor re-imports the parent's ``__main__`` script in every child it starts (through
  ``_mp_fixup_main``). mcpp loads a user's script itself, only in the step actors that need it
  and under the name ``__mp_main__`` (see ``mcpp.targets``), so the coordinator never runs user
  code and a script without the ``__main__`` guard gets a clear error instead of a hang.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import textwrap
import warnings
from typing import Any

from tractor import _actor, _ipc

__all__ = ["apply"]

# Children run ``python -m tractor._child``, which imports tractor before any mcpp code: this
# filter, inherited through the environment, keeps its one deprecation warning off stderr.
WARNING_FILTERS = (
    "ignore:trio.MultiError is deprecated",
    "ignore:MultiError.filter() is deprecated",
)


def no_main_data() -> dict[str, str]:
    """Tell children that there is no parent ``__main__`` to re-import."""
    return {}


# Methods on tractor's path of every message; each formats the whole message (payload and all)
# for a log line even when logging is off: four reprs per message, ~0.25 s for 10 MiB.
HOT_METHODS = (
    (_ipc.Channel, "send"),
    (_ipc.MsgpackTCPStream, "_iter_packets"),
    (_actor.Actor, "_process_messages"),
    (_actor.Actor, "_push_result"),
)
QUIET_LEVELS = frozenset({"transport", "runtime", "debug", "info"})


class DropLogCalls(ast.NodeTransformer):
    """Remove statements ``log.<level>(...)`` for the levels mcpp never enables."""

    def visit_Expr(self, node: ast.Expr) -> ast.AST | None:
        call = node.value
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and isinstance(call.func.value, ast.Name)
            and call.func.value.id == "log"
            and call.func.attr in QUIET_LEVELS
        ):
            return ast.Pass()
        return node


def without_log_calls(function: Any) -> Any:
    """Recompile ``function`` from its source without its quiet-level log calls.

    The statements become ``pass``; nothing else changes. The result runs in the function's
    own module namespace.
    """
    lines, first_line = inspect.getsourcelines(function)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    ast.increment_lineno(tree, first_line - 1)  # tracebacks keep pointing at tractor's lines
    tree = ast.fix_missing_locations(DropLogCalls().visit(tree))
    code = compile(tree, inspect.getsourcefile(function) or "<tractor>", "exec")
    namespace: dict[str, Any] = {}
    exec(code, function.__globals__, namespace)
    quiet = namespace[function.__name__]
    quiet.__qualname__ = function.__qualname__
    return quiet


def strip_hot_logging() -> None:
    """Replace tractor's per-message methods with copies that do not format log lines."""
    for owner, name in HOT_METHODS:
        method = getattr(owner, name)
        if not getattr(method, "mcpp_quiet", False):
            quiet = without_log_calls(method)
            quiet.mcpp_quiet = True
            setattr(owner, name, quiet)


def apply() -> None:
    """Apply the adjustments (idempotent)."""
    strip_hot_logging()
    _actor._mp_fixup_main._mp_figure_out_main = no_main_data
    current = [f for f in os.environ.get("PYTHONWARNINGS", "").split(",") if f]
    os.environ["PYTHONWARNINGS"] = ",".join(dict.fromkeys([*current, *WARNING_FILTERS]))
    for text in WARNING_FILTERS:
        warnings.filterwarnings("ignore", message=re.escape(text.partition(":")[2]))


def use_forkserver(preload: list[str]) -> None:
    """Start this process's child actors by forking a server that has ``preload`` imported.

    A fresh interpreter spends ~0.3 s of CPU importing trio and tractor; a fork of a server
    that has them imported starts in a few milliseconds. Two consequences handled elsewhere:
    tractor passes no runtime variables (the run secret) to forked actors, so a step actor
    accepts steps only over its parent channel and learns the secret from its parent's first
    message (``mcpp.actors.step``); and a forked actor's parent is the forkserver, so it
    watches the forkserver's parent to know when to exit (``mcpp.actors.parentwatch``).
    """
    from tractor import _spawn

    context = _spawn.try_set_start_method("forkserver")
    assert context is not None
    context.set_forkserver_preload(preload)
