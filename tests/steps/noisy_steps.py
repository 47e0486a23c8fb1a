"""A step module whose import prints: to stdout, to fd 1 directly, and to stderr."""

from __future__ import annotations

import os
import sys

print("IMPORT-TIME print")
os.write(1, b"IMPORT-TIME os.write\n")
print("IMPORT-TIME stderr", file=sys.stderr)


def quiet() -> int:
    """Print nothing; return 1."""
    return 1
