"""Side-by-side benchmarks, run with `make bench` (python -m benchmarks [NAME ...])."""

import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(fn):
    """(seconds, value) of ``fn()``."""
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value
