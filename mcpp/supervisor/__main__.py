"""``python -m mcpp.supervisor``: the mcpp command line."""

import sys

from mcpp.supervisor.cli import main

if __name__ == "__main__":
    sys.exit(main())
