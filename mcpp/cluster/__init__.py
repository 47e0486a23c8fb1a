"""Run a workflow's steps on a Dask distributed cluster (``actors = "dask"``).

The coordinator actor keeps the DAG, the policy, the journal's events and the cache as in the
other modes; only the launch of an isolated attempt changes: each attempt is one Dask task.

- :mod:`mcpp.cluster.launcher` (in the coordinator): connects the Dask client (or starts a
  throwaway local cluster through :mod:`mcpp.cluster.local`), submits each attempt, relays its
  start, cancels it, and turns what comes back into the step's outcome.
- :mod:`mcpp.cluster.task` (on a Dask worker): the task function. It runs the attempt in a
  child process (:mod:`mcpp.cluster.attempt`) with mcpp's own step runner and containment, and
  kills that process and everything it started on a timeout or a cancel, without ending the
  Dask worker.

What crosses Dask is bytes and strings only: a ``StartStep`` and the outcome as msgspec
MessagePack. Dask pickles the task call itself (the function's name and those bytes) and
the bytes it returns; mcpp pickles and unpickles nothing of its own.

This package may import ``protocol``, ``errors``, ``dag``, ``workflow`` and, of ``actors``,
``contain``, ``parentwatch``, ``launch`` and ``step`` (the step runner); never ``supervisor``
or ``cli``. ``distributed`` is imported only inside it, and only in dask mode.
"""
