"""``python -m mcpp.cli`` and the ``mcpp`` command: the mcpp command line."""

# ruff: noqa: E402 (the early signal handler goes in before the imports)
import sys

from mcpp.supervisor import signals

# The command line owns its process: from its first lines on (before the CLI's imports take
# their half second), Ctrl-C and SIGTERM cancel the run and exit 130, never -15 or a traceback.
signals.install()

from collections.abc import Sequence

from mcpp.cli import main as cli


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line (:func:`mcpp.cli.main.main`) as the process's own: once it has
    finished, SIGINT and SIGTERM are ignored while the interpreter shuts down, so the exit
    code is the command's (:func:`mcpp.supervisor.signals.finished`)."""
    code = cli.main(argv)
    signals.finished()
    return code


__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
