"""A generated transactions-only export, shaped like a real retailer's public purchase log.

One line per purchase: customer number, date as ``YYYYMMDD``, quantity, amount in USD. No event ids,
no categories, no logins, dates before 2000, a header line, CRLF line ends, and some genuinely
repeated lines (the same customer buying the same quantity for the same amount on the same day).
Generated here (never CDNOW or anything derived from it): a cohort of customers who first buy in the
first quarter, then buy again at a personal rate that fades, with gamma-distributed amounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

HEADER = "customer,date,qty,amount"


@dataclass(frozen=True)
class Export:
    """What was written: the file, its data lines and how many are exact repeats of an earlier line."""

    path: Path
    lines: int
    repeated: int
    customers: int


def write_export(path: Path, *, customers: int = 400, start: str = "1997-01-01", days: int = 360,
                 seed: int = 11, repeat_share: float = 0.01) -> Export:
    """Write the export (CRLF, header) and return what it holds."""
    rng = np.random.default_rng(seed)
    day0 = pd.Timestamp(start)
    rows: list[tuple[int, str, int, float]] = []
    for c in range(customers):
        first = int(rng.integers(0, 90))
        rate = float(rng.gamma(0.6, 1 / 30))  # purchases per day
        fade = float(rng.uniform(60, 400))  # days until the customer drifts away
        day = first
        while day < days:
            quantity = int(rng.integers(1, 6))
            amount = round(float(rng.gamma(2.0, 9.0)) * quantity, 2)
            rows.append((1000 + c, (day0 + pd.Timedelta(days=day)).strftime("%Y%m%d"), quantity, amount))
            if rng.random() < repeat_share:  # the same purchase made twice that day: a real second line
                rows.append(rows[-1])
            gap = rng.exponential(1 / max(rate * np.exp(-(day - first) / fade), 1e-4))
            day += max(1, round(gap))
    lines = [HEADER] + [f"{c},{d},{q},{a:.2f}" for c, d, q, a in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
    repeated = len(rows) - len(set(rows))
    return Export(path, len(rows), repeated, len({r[0] for r in rows}))
