"""Run the benchmarks side by side and print ratios: python -m benchmarks [resolve] [build] [runner] [report]
[fleet OPTIONS]. The words after a suite's name are its options (``run(argv)``)."""

from __future__ import annotations

import importlib
import sys
import time

SUITES = ("resolve", "build", "runner", "report")  # what runs when none is named
NAMED_ONLY = ("fleet",)  # a thousand sites: only when asked for


def suites(argv: list[str]) -> list[tuple[str, list[str]]]:
    """Each suite named, with the words that follow its name (its options and their values)."""
    chosen: list[tuple[str, list[str]]] = []
    for word in argv:
        if word in SUITES + NAMED_ONLY:
            chosen.append((word, []))
        elif chosen:
            chosen[-1][1].append(word)
        else:
            raise SystemExit(f"unknown benchmark {word!r}: choose from {', '.join(SUITES + NAMED_ONLY)}")
    return chosen or [(name, []) for name in SUITES]


def main(argv: list[str]) -> None:
    for name, options in suites(argv):
        module = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"\n== {name}: {module.__doc__.strip().splitlines()[0]}")
        started = time.perf_counter()
        module.run(options) if options else module.run()
        print(f"   ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
