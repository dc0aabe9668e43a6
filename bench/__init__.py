"""Benchmark suite for distproc: our protocol vs. peers (Dask, RQ) and transport limits."""
