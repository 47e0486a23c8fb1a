"""Adjustments to tractor 0.1.0a5 internals, all in one place.

- tractor 0.1.0a5 uses ``trio.MultiError``, deprecated in the trio it needs, and trio warns in
  every process that uses it; the filters apply here and travel to children through
  ``PYTHONWARNINGS``.
- The coordinator starts step and worker actors through tractor's 'forkserver' start method
  (:func:`use_forkserver`); the supervisor starts the coordinator with 'trio'.
- tractor re-imports the parent's ``__main__`` script in every child it starts (through
  ``_mp_fixup_main``). mcpp loads a user's script itself, only in the step actors that need it
  and under the name ``__mp_main__`` (see ``mcpp.targets``), so the coordinator never runs user
  code and a script without the ``__main__`` guard gets a clear error instead of a hang.
"""

from __future__ import annotations

import os
import re
import warnings

from tractor import _actor

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


def apply() -> None:
    """Apply the adjustments (idempotent)."""
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
