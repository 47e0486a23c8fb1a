"""``python -m mcpp.actors.spawner --fd N --preload a,b``: run the fork server."""

import sys

from mcpp.actors.spawner.server import main

sys.exit(main())
