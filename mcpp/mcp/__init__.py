"""``mcpp mcp``: workflows as tools for assistants, on the official ``mcp`` SDK (the extra
``mcpp[mcp]``).

* :mod:`mcpp.mcp.command` the ``mcpp mcp`` command line (imports no SDK until it runs)
* :mod:`mcpp.mcp.policy`  what the server may run: ``--root``, ``--allow-inline``, loopback
* :mod:`mcpp.mcp.runs`    the runs the server owns: one ``mcpp spawn`` child process each
* :mod:`mcpp.mcp.child`   the entry point of such a child (ends with the server unless kept)
* :mod:`mcpp.mcp.views`   journal reads: status, result, list, dependencies, templates, logs
* :mod:`mcpp.mcp.models`  the typed tool results (pydantic, so the SDK publishes their schema)
* :mod:`mcpp.mcp.server`  the tools and resources
* :mod:`mcpp.mcp.serve`   the transports (stdio, streamable HTTP), signals, shutdown

``server``, ``serve``, ``views``, ``models`` and ``runs`` import the SDK or its dependencies
(pydantic, anyio): only :mod:`mcpp.mcp.command` imports them, inside the command.
"""
