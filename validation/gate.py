"""The data-quality gate: every batch of canonical events passes a Great Expectations checkpoint.

Row-level expectations quarantine only the failing rows (found through GX's
``unexpected_index_list`` on a clean ``RangeIndex``); a failed batch-level expectation
quarantines the whole batch so that nothing of it reaches the feature store.

Great Expectations is imported lazily (it takes seconds), only inside :func:`run_gate`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from ingestion.schema import CANONICAL_COLUMNS, EVENT_TYPES, MONETARY_EVENTS
from persona.config import ChannelConfig
from validation.quarantine import QUARANTINE_COLUMNS, quarantine_frame

if TYPE_CHECKING:
    from great_expectations.checkpoint import Checkpoint
    from great_expectations.checkpoint.checkpoint import CheckpointResult
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.data_context import AbstractDataContext
    from great_expectations.datasource.fluent import PandasDatasource
    from great_expectations.expectations import Expectation

DATASOURCE = "persona_events"
ASSET = "canonical_events"
BATCH_DEFINITION = "whole_batch"
EVENTS_SUITE = "persona_canonical_events"
PURCHASES_SUITE = "persona_canonical_events_with_purchases"  # adds the purchase-distribution check

MIN_TIMESTAMP = pd.Timestamp("2000-01-01", tz="UTC")
FUTURE_TOLERANCE = pd.Timedelta(days=1)
MAX_AMOUNT = 100_000.0
MAX_QUANTITY = 1_000.0
PURCHASE_MEDIAN_RANGE = (0.5, 5_000.0)

ROW, BATCH = "row", "batch"


@dataclass(frozen=True)
class GateResult:
    """Outcome of the gate for one batch."""

    accepted: pd.DataFrame
    quarantined: pd.DataFrame
    batch_failed: bool
    success: bool
    failures: list[str]
    statistics: dict


@dataclass(frozen=True)
class _Failure:
    """One failed expectation, parsed from a GX validation result."""

    expectation: str
    column: str
    level: str
    rows: np.ndarray  # positions in the validated frame (row level only)
    count: int
    detail: str
    condition: str = ""

    @property
    def label(self) -> str:
        """``expectation(column)`` or ``expectation(column where condition)``: the name people see."""
        where = f" where {self.condition}" if self.condition else ""
        return f"{self.expectation}({self.column}{where})" if self.column or where else self.expectation

    def describe(self) -> str:
        """Human-readable one-liner, e.g. ``expect_...(event_type): 3 rows``."""
        if self.level == ROW:
            return f"{self.label}: {self.count} rows"
        return f"{self.label}: {self.detail}"


# --------------------------------------------------------------------------- expectations


def _row_expectations() -> list[Expectation]:
    """Expectations on single rows: a failing row is quarantined, the others go on."""
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    e = gx.expectations
    row = {"level": ROW}
    return [
        *(e.ExpectColumnValuesToNotBeNull(column=c, meta=row)
          for c in ("event_id", "user_id", "event_type", "channel", "timestamp")),
        e.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES), meta=row),
        e.ExpectColumnValuesToBeBetween(
            column="timestamp",
            min_value={"$PARAMETER": "min_timestamp"},
            max_value={"$PARAMETER": "max_timestamp"},
            meta=row,
        ),
        e.ExpectColumnValuesToBeBetween(column="amount", min_value=0.0, max_value=MAX_AMOUNT, meta=row),
        e.ExpectColumnValuesToNotBeNull(
            column="amount", row_condition=Column("event_type").is_in(list(MONETARY_EVENTS)),
            meta={**row, "note": "purchase/refund rows must carry an amount"},
        ),
        e.ExpectColumnValuesToBeInSet(column="currency", value_set={"$PARAMETER": "currencies"}, meta=row),
        e.ExpectColumnValuesToBeBetween(column="quantity", min_value=0.0, max_value=MAX_QUANTITY, meta=row),
    ]


def _batch_expectations() -> list[Expectation]:
    """Expectations on the batch as a whole: one failure quarantines every row."""
    import great_expectations as gx

    e = gx.expectations
    batch = {"level": BATCH}
    return [
        e.ExpectTableColumnsToMatchSet(column_set=list(CANONICAL_COLUMNS), exact_match=True, meta=batch),
        e.ExpectTableRowCountToBeBetween(min_value=1, meta=batch),
        e.ExpectColumnValuesToBeUnique(column="event_id", meta=batch),
    ]


def _distribution_expectations() -> list[Expectation]:
    """Distribution sanity checks on purchases whose amount passes the row-level range check.

    Only run when the batch has such purchases (GX fails a median of no rows).
    """
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    low, high = PURCHASE_MEDIAN_RANGE
    amount = Column("amount")
    valid_purchase = (Column("event_type") == "purchase") & (amount >= 0.0) & (amount <= MAX_AMOUNT)
    return [
        gx.expectations.ExpectColumnMedianToBeBetween(
            column="amount", min_value=low, max_value=high, row_condition=valid_purchase,
            meta={"level": BATCH, "note": "median amount of purchases with a valid amount"},
        )
    ]


def _has_valid_purchases(frame: pd.DataFrame) -> bool:
    """Whether the distribution suite applies: some purchase has an amount in the valid range."""
    if "event_type" not in frame or "amount" not in frame:
        return False
    amount = pd.to_numeric(frame["amount"], errors="coerce")
    return bool(((frame["event_type"] == "purchase") & amount.between(0.0, MAX_AMOUNT)).any())


def _result_format() -> dict[str, Any]:
    """Checkpoint result format: COMPLETE, because only it returns *every* failing row index.

    SUMMARY/BASIC cap ``unexpected_index_list`` at ``partial_unexpected_count`` (20). The
    unexpected-index *query* is switched off: for pandas it is a ``df.filter(items=[...])``
    string listing every index again.
    """
    return {"result_format": "COMPLETE", "return_unexpected_index_query": False, "partial_unexpected_count": 20}


def _expectation_parameters(base_currency: str, now: pd.Timestamp) -> dict[str, Any]:
    """Values for the ``$PARAMETER`` placeholders of the suites."""
    return {
        "min_timestamp": MIN_TIMESTAMP,
        "max_timestamp": now + FUTURE_TOLERANCE,
        "currencies": [base_currency],
    }


# --------------------------------------------------------------------------- GX objects


def _context(context_root: Path | None) -> AbstractDataContext:
    """A file-backed context under ``context_root`` or an in-memory one; no analytics, no progress bars."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    if context_root is None:
        config = DataContextConfig(
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        )
        return gx.get_context(mode="ephemeral", project_config=config)
    context_root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", context_root_dir=context_root)  # GX project lives right here
    variables = context.variables
    if variables.analytics_enabled is not False or not _progress_bars_off(variables.progress_bars):
        variables.analytics_enabled = False
        variables.progress_bars = ProgressBarsConfig(globally=False)
        variables.save()
    return context


def _progress_bars_off(config: Any) -> bool:
    """Whether a context's ``progress_bars`` setting disables them."""
    if config is None:
        return False
    globally = config.get("globally") if isinstance(config, dict) else getattr(config, "globally", True)
    return globally is False


def _batch_definition(context: AbstractDataContext, asset_name: str = ASSET) -> BatchDefinition:
    """Get or create datasource → dataframe asset → whole-dataframe batch definition."""
    try:
        datasource = cast("PandasDatasource", context.data_sources.get(DATASOURCE))
    except KeyError:
        datasource = context.data_sources.add_pandas(DATASOURCE)
    if asset_name in datasource.get_asset_names():
        asset = datasource.get_asset(asset_name)
    else:
        asset = datasource.add_dataframe_asset(asset_name)
    try:
        return asset.get_batch_definition(BATCH_DEFINITION)
    except KeyError:
        return asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)


def _suite_checkpoint(
    context: AbstractDataContext, *, name: str, expectations: list[Expectation], asset_name: str,
    result_format: dict[str, Any],
) -> Checkpoint:
    """Add or update one suite, its validation definition and a checkpoint of the same name."""
    import great_expectations as gx

    suite = context.suites.add_or_update(gx.ExpectationSuite(name=name, expectations=expectations))
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=name, data=_batch_definition(context, asset_name), suite=suite)
    )
    checkpoint = gx.Checkpoint(name=name, validation_definitions=[definition], actions=[], result_format=result_format)
    return context.checkpoints.add_or_update(checkpoint)


def _checkpoint(context: AbstractDataContext, *, with_distribution: bool) -> Checkpoint:
    """The canonical-events checkpoint, with or without the purchase-distribution check.

    Two fixed suites/checkpoints exist: one for batches with valid purchases (adds the
    distribution check, which GX fails on zero rows) and one without. One suite per run keeps
    it to one batch load: GX fingerprints (hashes) the whole DataFrame per validation definition.
    Data Docs are built once per session (:meth:`GateSession.build_docs`), not per batch.
    """
    expectations = _batch_expectations() + _row_expectations()
    if with_distribution:
        expectations += _distribution_expectations()
    return _suite_checkpoint(context, name=PURCHASES_SUITE if with_distribution else EVENTS_SUITE,
                             expectations=expectations, asset_name=ASSET, result_format=_result_format())


# --------------------------------------------------------------------------- results


def _parse_failures(result: CheckpointResult, n_rows: int) -> tuple[list[_Failure], dict]:
    """Failed expectations of a checkpoint run, plus summed statistics over its validations."""
    failures: list[_Failure] = []
    stats: dict[str, float | None] = {}
    for validation in result.run_results.values():
        for key, value in validation.statistics.items():
            if key != "success_percent":
                stats[key] = (stats.get(key) or 0) + (value or 0)
        failures.extend(_failure(r, n_rows) for r in validation.results if not r.success)
    failures.sort(key=lambda f: f.level != BATCH)  # batch-level first, stable otherwise
    evaluated = stats.get("evaluated_expectations") or 0
    successful = stats.get("successful_expectations") or 0
    stats["success_percent"] = 100.0 * successful / evaluated if evaluated else None
    return failures, stats


def _failure(er: Any, n_rows: int) -> _Failure:
    """Turn one failed ``ExpectationValidationResult`` into a :class:`_Failure`.

    A row-level expectation that raised, or whose index list does not match its count, is
    treated as a batch failure (fail safe: the gate cannot tell which rows are bad).
    """
    config = er.expectation_config
    column = str(config.kwargs.get("column") or "")
    condition = _condition_text(config.kwargs.get("row_condition"))
    level = (config.meta or {}).get("level", BATCH)
    result = er.result or {}
    named = {"expectation": config.type, "column": column, "condition": condition}
    empty = np.empty(0, dtype=np.int64)
    error = _exception_message(er.exception_info or {})
    if error is not None:
        return _Failure(**named, level=BATCH, rows=empty, count=0, detail=f"error: {error}")
    if level == ROW:
        rows = np.asarray(result.get("unexpected_index_list") or [], dtype=np.int64)
        count = int(result.get("unexpected_count") or 0)
        if len(rows) == count and count > 0 and rows.min() >= 0 and rows.max() < n_rows:
            return _Failure(**named, level=ROW, rows=rows, count=count, detail="")
        detail = f"{count} unexpected rows but {len(rows)} row indexes returned"
        return _Failure(**named, level=BATCH, rows=empty, count=count, detail=detail)
    return _Failure(**named, level=BATCH, rows=empty, count=0, detail=_batch_detail(config.type, result))


def _condition_text(row_condition: Any) -> str:
    """Readable form of an expectation's ``row_condition`` (stored as a dict in results)."""
    if not row_condition:
        return ""
    from great_expectations.expectations.row_conditions import deserialize_row_condition

    try:
        return repr(deserialize_row_condition(row_condition)) if isinstance(row_condition, dict) else str(row_condition)
    except (TypeError, ValueError):
        return str(row_condition)


def _exception_message(info: dict) -> str | None:
    """First line of the error GX caught, if any.

    ``exception_info`` is either flat (``raised_exception``, ``exception_message``) or, when a
    metric failed, keyed by metric id with one such dict per metric.
    """
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for entry in entries:
        if entry.get("raised_exception"):
            lines = str(entry.get("exception_message") or "unknown error").splitlines()
            return lines[0] if lines else "unknown error"
    return None


def _batch_detail(expectation: str, result: dict) -> str:
    """Short description of why a batch-level expectation failed."""
    if expectation == "expect_table_columns_to_match_set":
        details = (result.get("details") or {}).get("mismatched") or {}
        missing = sorted(details.get("missing") or [])
        extra = sorted(details.get("unexpected") or [])
        return f"missing columns {missing}, unexpected columns {extra}"
    if expectation == "expect_table_row_count_to_be_between" and result.get("observed_value") == 0:
        return "batch is empty (0 rows)"
    if "unexpected_count" in result:
        return f"{result['unexpected_count']} rows"
    observed = result.get("observed_value")
    return f"observed {observed.item() if isinstance(observed, np.generic) else observed!r}"


def _append(target: pd.Series, rows: np.ndarray, text: pd.Series | str, sep: str) -> None:
    """Append ``text`` to ``target`` at positions ``rows``, separated from earlier text by ``sep``."""
    current = target.iloc[rows]
    joiner = pd.Series(np.where(current.to_numpy() != "", sep, ""), index=current.index, dtype=object)
    target.iloc[rows] = current + joiner + text


def _row_reasons(events: pd.DataFrame, failures: list[_Failure]) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Per row position: joined failed expectation names, columns and reasons ("" when none)."""
    blank = pd.Series("", index=pd.RangeIndex(len(events)), dtype=object)
    checks, columns, reasons = blank.copy(), blank.copy(), blank.copy()
    for f in failures:
        if f.level != ROW:
            continue
        values = events[f.column].iloc[f.rows].astype(str)  # row-level failures name an existing column
        values.index = checks.index[f.rows]
        _append(checks, f.rows, f.expectation, "; ")
        _append(columns, f.rows, f.column, ",")
        _append(reasons, f.rows, f.label + ": got " + values, "; ")
    return checks, columns, reasons


def _assemble(events: pd.DataFrame, failures: list[_Failure], batch_id: str) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    """Split ``events`` into accepted rows and quarantine records."""
    checks, columns, reasons = _row_reasons(events, failures)
    batch = [f for f in failures if f.level == BATCH]
    if batch:
        prefix = "batch failed: " + "; ".join(f.describe() for f in batch)
        reason = prefix + ("; " + reasons).where(reasons != "", "")
        check = "; ".join(dict.fromkeys(f.expectation for f in batch))
        column = ",".join(dict.fromkeys(f.column for f in batch if f.column))
        records = quarantine_frame(events, batch_id=batch_id, check=check, column=column,
                                   reason=pd.Series(reason.to_numpy(), index=events.index))
        return events.iloc[0:0], records.loc[:, list(QUARANTINE_COLUMNS)], True
    bad = (reasons != "").to_numpy()
    if not bad.any():
        return events, quarantine_frame(events.iloc[0:0], batch_id=batch_id, check="", column=None, reason=""), False
    rows = events.iloc[bad]
    records = quarantine_frame(rows, batch_id=batch_id, check="", column=None,
                               reason=pd.Series(reasons[bad].to_numpy(), index=rows.index))
    records["check"] = checks[bad].to_numpy()
    records["column"] = columns[bad].to_numpy()
    return events.iloc[~bad], records.loc[:, list(QUARANTINE_COLUMNS)], False


# --------------------------------------------------------------------------- entry point


def _positional(events: pd.DataFrame) -> pd.DataFrame:
    """``events`` on an unnamed ``RangeIndex`` (GX then reports row positions); no data copy."""
    clean = pd.RangeIndex(len(events))
    if isinstance(events.index, pd.RangeIndex) and events.index.equals(clean) and events.index.name is None:
        return events
    frame = events.copy(deep=False)
    frame.index = clean
    return frame


class GateSession:
    """One GX context whose suites and checkpoints are built once and reused by every batch of a run.

    ``context_root`` selects a file-backed context (validation results kept, Data Docs built by
    :meth:`build_docs`); ``None`` keeps everything in memory. ``seconds`` adds up the time spent in
    GX (context set-up, validations, Data Docs) so callers can report the gate's share honestly.
    """

    def __init__(self, *, base_currency: str = "EUR", now: pd.Timestamp | None = None,
                 context_root: Path | None = None) -> None:
        started = time.perf_counter()
        now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
        self.now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
        self.base_currency = base_currency
        self.context_root = context_root
        self.context = _context(context_root)
        self._checkpoints: dict[str, Checkpoint] = {}
        self._results: list[Any] = []
        self.seconds = time.perf_counter() - started

    def _events_checkpoint(self, with_distribution: bool) -> Checkpoint:
        key = PURCHASES_SUITE if with_distribution else EVENTS_SUITE
        if key not in self._checkpoints:
            self._checkpoints[key] = _checkpoint(self.context, with_distribution=with_distribution)
        return self._checkpoints[key]

    def _raw_checkpoint(self, channel: str, cfg: ChannelConfig) -> Checkpoint:
        from validation.raw_suite import raw_expectations

        key = raw_suite_name(channel)
        if key not in self._checkpoints:
            self._checkpoints[key] = _suite_checkpoint(
                self.context, name=key, expectations=raw_expectations(cfg), asset_name=f"raw_{channel}",
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5})
        return self._checkpoints[key]

    def _run(self, checkpoint: Checkpoint, frame: pd.DataFrame, batch_id: str) -> CheckpointResult:
        from great_expectations.core.run_identifier import RunIdentifier

        result = checkpoint.run(
            batch_parameters={"dataframe": frame},
            expectation_parameters=_expectation_parameters(self.base_currency, self.now),
            run_id=RunIdentifier(run_name=batch_id, run_time=datetime.now(timezone.utc)),  # batch id in Data Docs
        )
        self._results.extend(result.run_results.keys())
        return result

    def check_raw(self, raw: pd.DataFrame, *, channel: str, cfg: ChannelConfig, batch_id: str) -> list[str]:
        """Validate a file's raw shape with the channel's suite; returns batch-level failures ([] = pass)."""
        started = time.perf_counter()
        try:
            frame = _positional(raw)
            result = self._run(self._raw_checkpoint(channel, cfg), frame, batch_id)
            failures, _ = _parse_failures(result, len(frame))
            return [f.describe() for f in failures]
        finally:
            self.seconds += time.perf_counter() - started

    def check_events(self, events: pd.DataFrame, *, batch_id: str) -> GateResult:
        """Validate one batch of canonical events; split accepted / quarantined rows."""
        started = time.perf_counter()
        try:
            frame = _positional(events)
            result = self._run(self._events_checkpoint(_has_valid_purchases(frame)), frame, batch_id)
            failures, stats = _parse_failures(result, len(frame))
            accepted, quarantined, batch_failed = _assemble(events, failures, batch_id)
            stats.update(rows=len(events), accepted=len(accepted), quarantined=len(quarantined))
            return GateResult(accepted=accepted, quarantined=quarantined, batch_failed=batch_failed,
                              success=bool(result.success), failures=[f.describe() for f in failures],
                              statistics=stats)
        finally:
            self.seconds += time.perf_counter() - started

    def build_docs(self) -> Path | None:
        """Render Data Docs (HTML) for this session's validations; the site's index page, or None in memory."""
        if self.context_root is None:
            return None
        started = time.perf_counter()
        try:
            self.context.build_data_docs(resource_identifiers=self._results or None)
            return docs_index(self.context_root)
        finally:
            self.seconds += time.perf_counter() - started


def raw_suite_name(channel: str) -> str:
    """Name of a channel's raw-shape suite."""
    return f"persona_raw_{channel}"


def docs_index(context_root: Path) -> Path:
    """The Data Docs index page of a file-backed GX context."""
    return context_root / "uncommitted" / "data_docs" / "local_site" / "index.html"


def run_gate(
    events: pd.DataFrame,
    *,
    batch_id: str,
    base_currency: str = "EUR",
    now: pd.Timestamp | None = None,
    context_root: Path | None = None,
) -> GateResult:
    """Validate one batch of canonical events with a GX checkpoint; split accepted / quarantined.

    A one-batch :class:`GateSession`: ``context_root`` selects a file-backed GX context (results
    kept, Data Docs built); ``None`` uses an in-memory one. ``now`` (default: current UTC time)
    bounds future timestamps.
    """
    session = GateSession(base_currency=base_currency, now=now, context_root=context_root)
    result = session.check_events(events, batch_id=batch_id)
    session.build_docs()
    return result
