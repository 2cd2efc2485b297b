"""Benchmarks of dynacron: ``python -m bench.run`` (``make bench``) prints every figure as JSON."""
