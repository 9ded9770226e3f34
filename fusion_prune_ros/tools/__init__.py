"""Tools around the node: benchmarks, the soak test, the demo and plots."""
