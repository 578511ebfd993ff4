"""ownstream benchmarks: `python -m bench.run [--quick]` (or `make bench`). Never run by tests."""
