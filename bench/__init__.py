"""The gateway's benchmark suite: `make bench` or `python -m bench` (see BENCHMARKS.md)."""
