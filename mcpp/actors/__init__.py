"""mcpp.actors."""
