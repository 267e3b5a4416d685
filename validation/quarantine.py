"""The quarantine store: rows and batches that failed a check, kept with the reason (never dropped)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd

from base.durable import replace_durably

QUARANTINE_COLUMNS: tuple[str, ...] = (
    "batch_id",
    "source_file",
    "source_row",
    "check",
    "column",
    "reason",
    "original",
)


def original_json(rows: pd.DataFrame) -> pd.Series:
    """Serialise each row as JSON text (the original values, for people and for release)."""
    if rows.empty:
        return pd.Series([], dtype=object, index=rows.index)
    text = rows.to_json(orient="records", lines=True, date_format="iso", default_handler=str)
    return pd.Series(text.splitlines(), index=rows.index)


def quarantine_frame(
    rows: pd.DataFrame, *, batch_id: str, check: str, column: str | None, reason: str | pd.Series
) -> pd.DataFrame:
    """Build quarantine records for ``rows`` (which carry ``source_file``/``source_row``)."""
    out = pd.DataFrame(index=rows.index)
    out["batch_id"] = batch_id
    out["source_file"] = rows["source_file"].astype(str) if "source_file" in rows else ""
    out["source_row"] = rows["source_row"].astype("int64") if "source_row" in rows else -1
    out["check"] = check
    out["column"] = column or ""
    out["reason"] = reason
    out["original"] = original_json(rows)
    return out.reset_index(drop=True)


def write_quarantine(records: pd.DataFrame, quarantine_dir: Path, batch_id: str) -> Path | None:
    """Append quarantine records for one batch atomically (temp file, then rename)."""
    if records.empty:
        return None
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    target = quarantine_dir / f"{batch_id}.parquet"
    tmp = quarantine_dir / f".{batch_id}.{uuid.uuid4().hex}.tmp"
    frame = records.loc[:, list(QUARANTINE_COLUMNS)].astype(
        {"source_file": str, "check": str, "column": str, "reason": str, "original": str}
    )
    frame.to_parquet(tmp, index=False)
    return replace_durably(tmp, target)


def read_quarantine(quarantine_dir: Path) -> pd.DataFrame:
    """All quarantined records (empty frame with the right columns when there are none)."""
    files = sorted(quarantine_dir.glob("*.parquet")) if quarantine_dir.exists() else []
    if not files:
        return pd.DataFrame(columns=list(QUARANTINE_COLUMNS))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def top_reasons(records: pd.DataFrame, limit: int = 3) -> list[str]:
    """The most frequent failed checks of some quarantine records, each with its row count and the
    first reason as an example (what a person needs to see first when everything was quarantined)."""
    if records.empty:
        return []
    keyed = records.assign(key=records["check"].astype(str) + records["column"].astype(str).map(
        lambda c: f"({c})" if c else ""))
    counts = keyed["key"].value_counts(sort=True)
    first = keyed.drop_duplicates("key").set_index("key")["reason"]
    def example(key: str) -> str:
        reason = str(first[key])
        return reason[len(key) + 2:] if reason.startswith(f"{key}: ") else reason

    return [f"{key}: {n} rows, e.g. {example(key)}" for key, n in counts.head(limit).items()]
