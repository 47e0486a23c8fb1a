"""Where mcpp keeps its files (the journal, the result cache): one resolver for all of them."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["mcpp_home"]


def mcpp_home(home: str | os.PathLike[str] | None = None) -> Path:
    """``home`` if given, else ``$MCPP_HOME`` if set and not empty, else ``./.mcpp``."""
    if home is not None:
        return Path(home)
    return Path(os.environ.get("MCPP_HOME") or ".mcpp")
