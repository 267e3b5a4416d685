"""Run benchmarks by name: ``python -m bench [startup] ...`` (all when none is named)."""

from __future__ import annotations

import importlib
import sys

BENCHES = ("startup",)


def main(argv: list[str]) -> None:
    """Run each named benchmark module's ``main()``."""
    for name in argv or BENCHES:
        if name not in BENCHES:
            raise SystemExit(f"unknown benchmark {name!r}; known: {', '.join(BENCHES)}")
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
