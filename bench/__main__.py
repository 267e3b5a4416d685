"""Run benchmarks by name: ``python -m bench NAME [ARGS...]`` (every benchmark with defaults when none)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

BENCHES = tuple(sorted(p.stem for p in Path(__file__).parent.glob("*.py") if not p.stem.startswith("_")))


def main(argv: list[str]) -> None:
    """Run one named benchmark with its own arguments, or all of them with their defaults."""
    if not argv:
        for name in BENCHES:
            importlib.import_module(f"bench.{name}").main([])
        return
    name, rest = argv[0], argv[1:]
    if name not in BENCHES:
        raise SystemExit(f"unknown benchmark {name!r}; known: {', '.join(BENCHES)}")
    importlib.import_module(f"bench.{name}").main(rest)


if __name__ == "__main__":
    main(sys.argv[1:])
