"""Command-line programs: the embedded demo and the benchmarks (run as files, e.g. `python scripts/bench_memory.py`)."""
