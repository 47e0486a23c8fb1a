"""Example workflows: run them from the repository root, e.g. ``mcpp spawn examples/fanout.toml``.

Each ``NAME.toml`` (or ``.json``/``.yaml``) workflow names step functions in ``NAME.py`` as
``examples.NAME:function``. A step function takes its ``args`` and the results of the steps it
depends on as keyword arguments (each result named by its step's id) and returns plain data.
"""
