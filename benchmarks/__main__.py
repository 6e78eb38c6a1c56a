"""Run the benchmarks side by side and print ratios: python -m benchmarks [resolve] [build] [runner] [report]."""

from __future__ import annotations

import importlib
import sys
import time

SUITES = ("resolve", "build", "runner", "report")


def main(argv: list[str]) -> None:
    chosen = argv or list(SUITES)
    for name in chosen:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"\n== {name}: {module.__doc__.strip().splitlines()[0]}")
        started = time.perf_counter()
        module.run()
        print(f"   ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
