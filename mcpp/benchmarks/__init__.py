"""Benchmarks of mcpp against a stdlib baseline measured in the same run.

Each is a script with an argparse ``main()`` that prints one JSON document (``--json``) or a
line a figure: ``python -m mcpp.benchmarks.NAME [--repeat R] [--json] [--smoke]`` for NAME in
``dispatch``, ``scaling``, ``payload``, ``memory``, ``startup``, ``faults``;
``python -m mcpp.benchmarks.all`` runs them all with modest sizes and prints their documents.
The baseline is ``concurrent.futures.ProcessPoolExecutor`` driven by a plain DAG loop. Shared
code: :mod:`~mcpp.benchmarks.common` (shapes, runners) and :mod:`~mcpp.benchmarks.document`
(the figures); the step functions every system runs: :mod:`~mcpp.benchmarks.workloads`.
"""
