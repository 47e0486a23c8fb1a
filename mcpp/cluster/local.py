"""``python -m mcpp.cluster.local``: a throwaway Dask cluster on loopback, for trying dask mode.

The coordinator starts this helper when a dask-mode run names no scheduler. It starts a
:class:`distributed.LocalCluster` (its scheduler on 127.0.0.1 on a free port, :data:`WORKERS`
worker processes of one thread each; the scheduler's HTTP routes on a free loopback port, its
scratch files in a temporary folder of its own, removed at the end), prints the scheduler's
address as one line on stdout, and runs until its stdin closes; then it closes the cluster and
exits. It is a child subreaper that watches its starter, so when the coordinator dies the
cluster's processes end with it. Nothing of it outlives the run.

The cluster has no TLS: while it runs, any local user who can connect to 127.0.0.1 can submit
code to its workers (see the README, "Running on a Dask cluster").
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile

from mcpp.actors import contain
from mcpp.actors.parentwatch import watch_parent

__all__ = ["WORKERS", "main"]

WORKERS = 2


def main() -> int:
    """Run the cluster until stdin closes; return 0 (1 if it could not start)."""
    watch_parent()
    contain.become_subreaper(sweep=False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator ends it, not Ctrl-C
    logging.getLogger("distributed").setLevel(logging.ERROR)
    import dask
    from distributed import LocalCluster

    scratch = tempfile.mkdtemp(prefix="mcpp-dask-")  # not a shared /tmp/dask-scratch-space
    os.environ["DASK_TEMPORARY_DIRECTORY"] = scratch  # the scheduler's and the workers' too
    dask.config.set({"temporary-directory": scratch})
    try:
        cluster = LocalCluster(
            n_workers=WORKERS,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address="127.0.0.1:0",  # a free port: no "8787 is in use" warning
            protocol="tcp://",
            local_directory=scratch,
        )
    except Exception as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        print(f"mcpp.cluster.local: the local Dask cluster did not start: {exc}", file=sys.stderr)
        return 1
    try:
        print(cluster.scheduler_address, flush=True)
        sys.stdin.buffer.read()
    finally:
        cluster.close(timeout=10)
        contain.end_descendants()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
