"""Benchmarks of mcpp against a stdlib baseline measured in the same run.

Each is a script with an argparse ``main()`` that prints one JSON document (``--json``) or a
Markdown table: ``python -m mcpp.benchmarks.NAME [--repeat R] [--json] [--smoke]`` for NAME in
``dispatch``, ``scaling``, ``payload``, ``memory``, ``startup``, ``faults``;
``python -m mcpp.benchmarks.all --readme README.md`` runs them all with modest sizes and
rewrites the README's generated table. The baseline is ``concurrent.futures.ProcessPoolExecutor``
driven by a plain DAG loop; Ray and Dask are extra columns when importable (never required).
Shared code: :mod:`mcpp.benchmarks.common`; the step functions every system runs:
:mod:`mcpp.benchmarks.workloads`.
"""
