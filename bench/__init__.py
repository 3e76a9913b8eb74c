"""Benchmarks (not tests): each measures the console side by side with the baseline the issue
names, in the same run on the same data, and records the ratio in docs/BENCHMARKS.md."""
