"""Benchmarks (not tests): run from the repo root, e.g. ``.venv/bin/python -m bench.trainer``."""
