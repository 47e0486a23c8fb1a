"""mcpp.supervisor."""
