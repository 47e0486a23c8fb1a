"""Adjustments to tractor 0.1.0a5 internals, all in one place.

- tractor 0.1.0a5 warns about ``trio.MultiError`` in every process that imports it; the filter
  travels to children through ``PYTHONWARNINGS``.
- tractor re-imports the parent's ``__main__`` script in every child it starts (through
  ``_mp_fixup_main``). mcpp loads a user's script itself, only in the step actors that need it
  and under the name ``__mp_main__`` (see ``mcpp.targets``), so the coordinator never runs user
  code and a script without the ``__main__`` guard gets a clear error instead of a hang.
"""

from __future__ import annotations

import os

from tractor import _actor

__all__ = ["apply"]

# Children run ``python -m tractor._child``, which imports tractor before any mcpp code: this
# filter, inherited through the environment, keeps its one deprecation warning off stderr.
WARNING_FILTER = "ignore:trio.MultiError is deprecated"


def no_main_data() -> dict[str, str]:
    """Tell children that there is no parent ``__main__`` to re-import."""
    return {}


def apply() -> None:
    """Apply the adjustments (idempotent)."""
    _actor._mp_fixup_main._mp_figure_out_main = no_main_data
    current = os.environ.get("PYTHONWARNINGS", "")
    if WARNING_FILTER not in current:
        os.environ["PYTHONWARNINGS"] = f"{current},{WARNING_FILTER}" if current else WARNING_FILTER
