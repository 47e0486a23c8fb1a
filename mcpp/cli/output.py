"""Machine output: ``--json`` writes exactly one document on stdout, whatever the steps print."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

__all__ = ["document_stdout"]


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
