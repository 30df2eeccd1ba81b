"""Benchmarks: `make bench` (python -m benchmarks). Figures are ratios to a peer in the same run."""
