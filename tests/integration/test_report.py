"""The report: one self-contained HTML file whose every chart renders in headless Chromium without any
network request. Inputs are real: a persona history, ledger records, a drift check and LightGBM
models trained and registered in a real MLflow store."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from ingestion.ledger import BatchRecord, append_record
from base.config import Settings
from scoring.drift import DriftResult, drift_dir, save_result
from scoring.history import append_history
from base.paths import DataPaths
from persona.report import latest_report_path, write_report
from tests.conftest import settings_in
from tests.model.conftest import FAST, FEATURES, RULES, synthetic_set
from training.train import train_all

CHROMIUM = "/usr/bin/chromium"
CHARTS = 6  # segment sizes, migration, model metrics, drift, data quality, importances


def _personas(day: str, segments: list[str], spend: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [f"u{i:05d}" for i in range(len(segments))], "segment": segments,
                         "predicted_spend": spend, "churn_risk": 0.3, "spend_version": "1", "churn_version": "1",
                         "feature_timestamp": pd.Timestamp(day, tz="UTC"), "scored_at": pd.Timestamp.now(tz="UTC")})


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    """Every input of the report, then the report."""
    settings = settings_in(tmp_path_factory.mktemp("report") / "data")
    settings = settings.model_copy(update={"segments": RULES})
    ml = settings.ml
    data, split = synthetic_set(users=300)
    train_all(data, FEATURES, split, FAST, ml, rules=RULES, categories=["home", "sports", "beauty"])
    train_all(synthetic_set(users=300, seed=1)[0], FEATURES, split, FAST, ml, rules=RULES,
              categories=["home", "sports", "beauty"])  # a second version: champion vs challenger
    append_history(settings, _personas("2026-11-01", ["big", "rest", "risky", "rest"], [80, 10, 5, 12]), "batch")
    append_history(settings, _personas("2026-11-02", ["big", "big", "rest", "rest"], [85, 70, 6, 12]), "batch")
    now = datetime.now(timezone.utc).isoformat()
    for i, (read, quarantined, dupes) in enumerate([(1000, 12, 30), (800, 0, 5)]):
        append_record(DataPaths(settings.data_dir).ledger, BatchRecord(
            batch_id=f"b{i:03d}", channel="web", file=f"raw/web/day{i}.jsonl", sha256=f"{i:064d}", rows_read=read,
            accepted=read - quarantined - dupes, quarantined=quarantined, duplicates=dupes,
            status="accepted" if not quarantined else "partially_quarantined", message="", processed_at=now))
    save_result(drift_dir(settings) / "drift_test.json", DriftResult(
        key="test", window="2026-11-02", reference=["2026-11-01"], champions={"spend": "1", "churn": "1"},
        features={f: 0.05 * (k + 1) for k, f in enumerate(FEATURES)}, outputs={"spend": 0.02, "churn": 0.3},
        warn=0.1, alert=0.25, drifted_features=[FEATURES[-1]], drifted_outputs=["churn"], retrain=True,
        reason="test", checked_at=now))
    return settings, write_report(settings)


def test_the_report_is_one_file_and_the_latest(reported: tuple[Settings, Path]) -> None:
    settings, path = reported
    assert latest_report_path(settings) == path and path.exists()
    text = path.read_text(encoding="utf-8")
    assert "<script src=" not in text and "<link " not in text  # nothing loaded by URL
    assert text.count('class="plotly-graph-div"') == CHARTS
    assert 'id="most-changed"' in text and "u00001" in text  # the user whose segment changed is in the table
    # every baseline keeps its row beside the champion, and the report says which fit serves
    assert text.count('class="champion-baselines"') == 3
    assert "baseline bgnbd_gamma_gamma" in text and "baseline always_zero" not in text
    assert "serves refit on 5 labelled cutoffs up to 2026-06-29 (the gate judged the evaluated fit)" in text


def test_every_chart_renders_in_chromium_without_network(reported: tuple[Settings, Path]) -> None:
    from playwright.sync_api import sync_playwright

    _, path = reported
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            charts = page.evaluate("""() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => ({
                traces: (d._fullData || []).length,
                svg: d.querySelectorAll('svg.main-svg').length,
                marks: d.querySelectorAll('g.trace, .sankey-node, g.point, path.point, g.bars').length}))""")
        finally:
            browser.close()
    assert not errors, errors
    assert len(charts) == CHARTS
    for i, chart in enumerate(charts):
        assert chart["traces"] > 0 and chart["svg"] > 0 and chart["marks"] > 0, (i, chart)
    outside = [u for u in requests if not u.startswith(("file://", "data:", "blob:", "about:"))]
    assert requests and not outside, outside
