"""Small pieces of the update commands."""

from __future__ import annotations

import pytest
import typer

from persona.commands.update import parse_every


def test_every_accepts_seconds_minutes_hours_days() -> None:
    assert [parse_every(t) for t in ("45", "30s", "15m", "1h", "1.5h", "2d")] == [45, 30, 900, 3600, 5400, 172800]
    for bad in ("", "h", "-1h", "0m", "1w", "one hour"):
        with pytest.raises(typer.BadParameter):
            parse_every(bad)
