"""``python -m mcpp.supervisor``: the mcpp command line (see :mod:`mcpp.cli`)."""

import sys

from mcpp.cli.__main__ import main  # installs the early signal handler first

if __name__ == "__main__":
    sys.exit(main())
