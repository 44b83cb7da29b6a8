"""Benchmarks: `python -m bench SCENARIO [--quick]` (see bench/__main__.py)."""
