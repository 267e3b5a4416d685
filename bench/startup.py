"""CLI start-up: ``persona --help`` against a bare ``python -c pass`` and against importing the
heavy libraries, measured in one run (ratios, because this machine is shared and noisy)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

PERSONA = str(Path(sys.executable).parent / "persona")


def _time(cmd: list[str], repeat: int) -> float:
    """Median wall time of a command in seconds."""
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main(argv: list[str] | None = None, repeat: int = 7) -> None:
    """Print median times and ratios."""
    bare = _time([sys.executable, "-c", "pass"], repeat)
    helptime = _time([PERSONA, "--help"], repeat)
    heavy = _time([sys.executable, "-c", "import feast, mlflow, great_expectations, lightgbm"], max(1, repeat // 3))
    print(f"python -c pass          {bare * 1000:8.0f} ms")
    print(f"persona --help          {helptime * 1000:8.0f} ms   ({helptime / bare:.1f}x bare python)")
    print(f"import heavy libraries  {heavy * 1000:8.0f} ms   (--help takes {helptime / heavy:.2f} of that)")


if __name__ == "__main__":
    main()
