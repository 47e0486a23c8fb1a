"""Where mcpp keeps its files, and how a run is named on the command line: one place for both.

The layout under the home folder (:func:`mcpp_home`)::

    journal.db            the run journal (mcpp.supervisor.journal)
    cache.sqlite3         the result cache (mcpp.cache)
    runs/RUN_ID/          everything else one run owns: its step logs, its large results;
                          removed with the run (``mcpp runs rm``)

Everything mcpp creates there is private to the user: folders 0700, files 0600
(:func:`private_folder`, :data:`PRIVATE_FILE`), since params and results may hold secrets.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from mcpp.errors import MCPPError

__all__ = [
    "LAST",
    "PRIVATE_FILE",
    "PRIVATE_FOLDER",
    "RunIdError",
    "mcpp_home",
    "private_folder",
    "resolve_run_id",
    "run_folder",
]

PRIVATE_FOLDER: Final = 0o700
PRIVATE_FILE: Final = 0o600
LAST: Final = "last"  # the run id that names the newest run


class RunIdError(MCPPError, LookupError):
    """A run id given by the user names no run, or more than one (an ambiguous prefix)."""


def mcpp_home(home: str | os.PathLike[str] | None = None) -> Path:
    """``home`` if given, else ``$MCPP_HOME`` if set and not empty, else ``./.mcpp``."""
    if home is not None:
        return Path(home)
    return Path(os.environ.get("MCPP_HOME") or ".mcpp")


def run_folder(run_id: str, home: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds what run ``run_id`` owns besides its journal rows (not created)."""
    return mcpp_home(home) / "runs" / run_id


def private_folder(path: Path) -> Path:
    """Create ``path`` and its missing parents as 0700 folders (the umask aside); return it.

    An existing folder is left as it is. Raises OSError when it cannot be created.
    """
    missing = []
    for folder in (path, *path.parents):
        if folder.is_dir():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_FOLDER)
        except FileExistsError:
            continue
        os.chmod(folder, PRIVATE_FOLDER)
    return path


def resolve_run_id(text: str, runs: Iterable[tuple[str, float]]) -> str:
    """The run ``text`` names among ``runs`` (``(run_id, created_at)`` pairs).

    ``text`` is a whole run id, a prefix matching exactly one run, or ``last`` (the newest by
    ``created_at``). Raises RunIdError when it names none, or several (listing them).
    """
    known = list(runs)
    if text == LAST:
        if not known:
            raise RunIdError("there is no run yet")
        return max(known, key=lambda run: run[1])[0]
    ids = [run_id for run_id, _ in known]
    if text in ids:
        return text
    matches = sorted(run_id for run_id in ids if text and run_id.startswith(text))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RunIdError(f"no run {text!r}")
    shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
    raise RunIdError(f"run id {text!r} is ambiguous: it starts {len(matches)} runs ({shown})")
