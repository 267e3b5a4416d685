"""Benchmarks: figures, never pass/fail. Run with ``make bench`` or ``python -m bench NAME``."""
