"""The command line (``mcpp``, ``python -m mcpp.supervisor``): argparse commands, the live
progress view and event output, on top of the library in :mod:`mcpp.supervisor`."""
