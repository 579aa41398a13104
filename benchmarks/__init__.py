"""Reproducible measurements; results with machine and date go to benchmarks/results/."""
