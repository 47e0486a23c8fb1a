"""mcpp."""
