"""A preloaded fork server that speaks msgspec only, reachable by no one but its parent.

The parent (a trio program) starts ``python -m mcpp.actors.spawner --fd N --preload a,b``
with ``N`` one end of a ``socketpair(AF_UNIX, SOCK_STREAM)``; no path, no port: only the
parent holds the other end. The server imports the preload modules, says ``Ready``, then
serves ``Spawn`` requests until EOF (the parent closed its end or died) and exits at once,
without waiting for or signalling its children. It forks one child per request and reports
``Spawned`` (or ``SpawnFailed``), then ``Exited`` when it reaps the child.

Three modules, one per side of the socket and one for the socket itself:

* :mod:`~mcpp.actors.spawner.wire`: the messages and their framing, shared by both sides;
* :mod:`~mcpp.actors.spawner.server`: the server process and what each forked child does
  before and after its entry (``python -m mcpp.actors.spawner`` runs its ``main``);
* :mod:`~mcpp.actors.spawner.parent`: the parent's side, :class:`~.parent.Spawner` (start it
  with :func:`~.parent.open_spawner`) and the :class:`~.parent.ForkedProcess` handle of a child.
"""
