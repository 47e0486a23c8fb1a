"""Output: ``--json`` writes exactly one document on stdout, whatever the steps print; tables
go through a rich console that reports a closed pipe as :class:`BrokenPipeError`."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

__all__ = ["document_stdout", "stdout_console"]


def stdout_console() -> Any:
    """A rich ``Console`` on standard output whose closed pipe raises ``BrokenPipeError``, for
    :func:`mcpp.cli.main.main` to end quietly (rich's own handling exits 1, which reads as a
    failed run)."""
    from rich.console import Console

    class PipeConsole(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    return PipeConsole()


@contextmanager
def document_stdout(keep: bool) -> Iterator[BinaryIO]:
    """With ``keep``, point file descriptor 1 at standard error while the block runs, and yield
    the real standard output for the document alone.

    Every process of the run inherits descriptor 1 from this one, so what a step prints (and
    what its subprocesses print, C extensions included) goes to stderr instead of into the
    JSON. The copy of the real stdout is not inherited by any child. Without ``keep``, yields
    ``sys.stdout.buffer`` and changes nothing.
    """
    if not keep:
        yield sys.stdout.buffer
        return
    sys.stdout.flush()
    saved = os.dup(1)  # not inheritable: no step process can hold it
    os.dup2(2, 1)
    try:
        with open(saved, "wb", closefd=False) as document:
            yield document
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
