"""mcpp.benchmarks."""
