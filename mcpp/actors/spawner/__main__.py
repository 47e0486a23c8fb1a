"""``python -m mcpp.actors.spawner --fd N --preload a,b``: run the fork server.

The server ends with ``os._exit``: it holds nothing to finalise (no file of its own, no thread;
its children are the actors, ended by then), and the interpreter's orderly shutdown of every
preloaded module took tens of milliseconds off the end of every run.
"""

import os
import signal
import sys

signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's, imports included

from mcpp.actors.spawner.server import main  # noqa: E402

code = main()
for stream in (sys.stdout, sys.stderr):
    stream.flush()
os._exit(code)
