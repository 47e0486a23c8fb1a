"""``python -m mcpp.cli`` and the ``mcpp`` command: the mcpp command line."""

# ruff: noqa: E402 (the early signal handler goes in before the imports)
import sys

from mcpp.supervisor import signals

# The command line owns its process: from its first lines on (before the CLI's imports take
# their half second), Ctrl-C and SIGTERM cancel the run and exit 130, never -15 or a traceback.
signals.install()

from mcpp.cli.main import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
