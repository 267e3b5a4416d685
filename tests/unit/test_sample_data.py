"""The sample generator: deterministic, in the configured formats, persona-driven, realistically messy."""

from __future__ import annotations

import hashlib
import io
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from base.config import Settings, load_settings
from persona.sample_data import PERSONA_NAMES, SampleSummary, generate_sample_data, has_sample_data

CONFIG = Path(__file__).resolve().parents[2] / "persona.yaml"
USERS, DAYS = 200, 40


def make_settings(data_dir: Path, **sample: float) -> Settings:
    """persona.yaml with a temporary data directory (and optionally other sample settings)."""
    s = load_settings(CONFIG)
    update: dict = {"data_dir": data_dir}
    if sample:
        update["sample"] = s.sample.model_copy(update=sample)
    return s.model_copy(update=update)


def digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def read_jsonl(files: list[Path]) -> tuple[pd.DataFrame, list[str], int]:
    """Parsed rows, unparseable lines, total lines."""
    rows, bad, total = [], [], 0
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            total += 1
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                bad.append(line)
    return pd.DataFrame(rows), bad, total


def read_csv(files: list[Path], sep: str) -> pd.DataFrame:
    """All files of a CSV channel as strings, with the file name; rows of the wrong width skipped."""
    frames = []
    for path in files:
        header, *rows = path.read_text(encoding="utf-8").splitlines()
        good = [header] + [row for row in rows if row.count(sep) == header.count(sep)]
        frame = pd.read_csv(io.StringIO("\n".join(good)), sep=sep, dtype=str, keep_default_na=False, na_values=[""])
        frames.append(frame.assign(_file=path.name))
    return pd.concat(frames, ignore_index=True)


def data_lines(files: list[Path], header: bool) -> list[str]:
    """Every data line of a channel (header dropped)."""
    return [ln for p in files for ln in p.read_text(encoding="utf-8").splitlines()[1 if header else 0:]]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, SampleSummary]:
    settings = make_settings(tmp_path_factory.mktemp("sample") / "data")
    return settings, generate_sample_data(settings, users=USERS, days=DAYS)


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, SampleSummary]:
    settings = make_settings(tmp_path_factory.mktemp("messy") / "data", mess_rate=0.08)
    return settings, generate_sample_data(settings, users=3 * USERS, days=DAYS)


@pytest.fixture(scope="module")
def truth(sample: tuple[Settings, SampleSummary]) -> pd.DataFrame:
    return pd.read_csv(sample[1].ground_truth, dtype=str, keep_default_na=False)


def history(settings: Settings, days: int = DAYS) -> tuple[datetime, datetime]:
    end = datetime.combine(settings.sample.end_date, datetime.min.time(), timezone.utc)
    return end - timedelta(days=days), end


# --------------------------------------------------------------------------- determinism and files


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path,
                                                                   sample: tuple[Settings, SampleSummary]) -> None:
    again = make_settings(tmp_path / "again")
    other = make_settings(tmp_path / "other")
    generate_sample_data(again, users=USERS, days=DAYS)
    generate_sample_data(other, users=USERS, days=DAYS, seed=sample[0].sample.seed + 1)
    first = digest(sample[0].data_dir)
    assert first and digest(again.data_dir) == first
    assert all(first.get(name) != value for name, value in digest(other.data_dir).items())


def test_every_channel_glob_gets_several_drops(sample: tuple[Settings, SampleSummary]) -> None:
    settings, summary = sample
    generated = {n: c for n, c in settings.channels.items() if n != "api"}  # the API's log is not sample data
    assert set(summary.files) == set(generated)
    assert not list(settings.data_dir.glob(settings.channels["api"].path))
    for name, cfg in generated.items():
        on_disk = sorted(settings.data_dir.glob(cfg.path))
        assert sorted(summary.files[name]) == on_disk
        # 40 days ending 2026-11-01: September and October (support tickets are rare enough to skip a month)
        assert len(on_disk) == 2 or (name == "crm" and len(on_disk) == 1), name
    assert summary.ground_truth == settings.data_dir / "sample" / "ground_truth.csv"
    assert not any(summary.ground_truth.parent == Path(f).parent for fs in summary.files.values() for f in fs)
    assert not list(settings.data_dir.rglob(".*.tmp"))


def test_has_sample_data_once_every_channel_has_a_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    assert not has_sample_data(settings)
    generate_sample_data(settings, users=2, days=1)  # tiny: some channels have no rows at all
    assert has_sample_data(settings)
    next(settings.data_dir.glob(settings.channels["crm"].path)).unlink()
    assert not has_sample_data(settings)


def test_summary_counts_match_the_files(sample: tuple[Settings, SampleSummary]) -> None:
    settings, summary = sample
    written = sum(len(data_lines(files, header=settings.channels[name].format == "csv"))
                  for name, files in summary.files.items())
    assert summary.rows_written == written
    assert summary.users == USERS and summary.days == DAYS
    assert 0.9 * summary.rows_written < summary.events < summary.rows_written


def test_rerun_overwrites_cleanly_and_keeps_foreign_files(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    generate_sample_data(settings, users=30, days=100)
    foreign = settings.data_dir / "raw" / "web" / "partner_feed.jsonl"
    foreign.write_text('{"event_id": "x"}\n')
    before = {p for cfg in settings.channels.values() for p in settings.data_dir.glob(cfg.path)}
    summary = generate_sample_data(settings, users=30, days=DAYS)
    web = sorted(p.name for p in (settings.data_dir / "raw" / "web").iterdir())
    assert web == sorted([foreign.name] + [p.name for p in summary.files["web"]])
    after = {p for cfg in settings.channels.values() for p in settings.data_dir.glob(cfg.path)}
    assert after == {foreign} | {p for files in summary.files.values() for p in files}
    assert len(before) > len(after)  # the July and August drops of the first run are gone
    assert all(re.search(r"_2026-(09|10)\.", p.name) for p in after - {foreign})
    assert len(pd.read_csv(summary.ground_truth)) == 30


# --------------------------------------------------------------------------- formats


def test_web_is_jsonl_with_offsets_and_identify_links(sample: tuple[Settings, SampleSummary]) -> None:
    settings, summary = sample
    cfg = settings.channels["web"]
    web, _, _ = read_jsonl(summary.files["web"])
    assert set(web.columns) == set(cfg.columns.values())
    assert set(web["event"]) == set(cfg.event_types)
    assert set(web["device"]) <= {"desktop", "mobile", "tablet"}
    assert web["anonymous_id"].str.fullmatch(r"a-[0-9a-f]{12}").all()
    offsets = web["ts"].str.extract(r"(Z|[+-]\d\d:\d\d)$")[0]
    assert offsets.notna().all() and offsets.nunique() >= 3 and (offsets == "Z").any()
    ts = pd.to_datetime(web["ts"], format="ISO8601", utc=True)
    start, end = history(settings)
    assert ts.min() >= pd.Timestamp(start) and ts.max() < pd.Timestamp(end)
    identify = web[web["event"] == "identify"]
    assert len(identify) and identify["user_id"].str.fullmatch(r"u\d{6}").all()
    assert identify["anonymous_id"].notna().all()
    assert 0.05 < web["user_id"].notna().mean() < 0.5  # most web events are anonymous-only
    # every anonymous id with a user id belongs to exactly one user
    assert web.dropna(subset=["user_id"]).groupby("anonymous_id")["user_id"].nunique().max() == 1


def test_app_is_csv_with_epoch_milliseconds(sample: tuple[Settings, SampleSummary]) -> None:
    settings, summary = sample
    cfg = settings.channels["app"]
    header = summary.files["app"][0].read_text().splitlines()[0]
    assert header == "uuid,customer_ref,device_id,action,epoch_ms,item_sku,item_category,platform,session"
    app = read_csv(summary.files["app"], ",")
    assert set(app["action"]) == set(cfg.event_types)
    assert set(app["platform"]) == {"ios", "android"}
    ms = pd.to_numeric(app["epoch_ms"], errors="coerce").dropna()
    start, end = history(settings)
    assert len(ms) > 0.99 * len(app)
    assert ms.min() >= start.timestamp() * 1000 and ms.max() < end.timestamp() * 1000
    signin = app[app["action"] == "signin"]
    assert len(signin) and signin["customer_ref"].notna().all() and signin["device_id"].notna().all()
    assert app["customer_ref"].isna().any()  # signed-out rows


def test_orders_are_semicolon_csv_in_local_time_with_refunds(sample: tuple[Settings, SampleSummary]) -> None:
    settings, summary = sample
    orders = read_csv(summary.files["orders"], ";")
    assert list(orders.columns[:-1]) == ["order_id", "customer_id", "email", "status", "order_date", "total",
                                         "currency", "qty", "category", "sku"]
    assert set(orders["status"]) == {"completed", "refunded"}
    assert orders["order_date"].str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d").all()
    assert orders["email"].str.fullmatch(r"[a-z]+\.[a-z]+\d+@example\.(com|org|net)", case=False).all()
    assert orders["currency"].value_counts().index[0] == "EUR" and set(orders["currency"]) <= set(settings.fx_rates)
    assert pd.to_numeric(orders["qty"]).min() >= 1
    dates = pd.to_datetime(orders["order_date"])
    done = dates[orders["status"] == "completed"].groupby(orders["order_id"]).min()
    back = dates[orders["status"] == "refunded"].groupby(orders["order_id"]).min()
    paired = back.index.intersection(done.index)  # a completed row may have been malformed on purpose
    assert len(back) > 0 and len(paired) >= 0.8 * len(back)
    assert (back[paired] > done[paired]).all()
    assert 0.003 < len(back) / len(done) < 0.12


def test_social_and_crm_formats(sample: tuple[Settings, SampleSummary]) -> None:
    settings, summary = sample
    start, end = history(settings)
    social, _, _ = read_jsonl(summary.files["social"])
    assert set(social.columns) == {"interaction_id", "member_id", "kind", "created_at", "network"}
    assert set(social["kind"]) == {"like", "share", "comment"}
    assert set(social["network"]) <= {"instagram", "tiktok", "facebook"}
    created = social["created_at"]
    assert created.map(type).eq(int).all()
    assert created.min() >= start.timestamp() and created.max() < end.timestamp()
    crm = pd.concat([pd.read_csv(p, sep=r"\s+", dtype=str) for p in summary.files["crm"]])
    assert summary.files["crm"][0].read_text().splitlines()[0].split() == ["ticket", "customer", "opened", "topic",
                                                                           "phone"]
    assert set(crm["topic"]) <= {"delivery", "returns", "payment", "account"} and crm["topic"].nunique() >= 3
    assert crm["opened"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all()
    assert crm["phone"].str.fullmatch(r"\+\d{1,2}-\d{3}-\d{7}").all()
    assert crm["customer"].str.fullmatch(r"u\d{6}").all()


# --------------------------------------------------------------------------- ground truth and behaviour


def test_ground_truth_covers_every_user_with_switchers(sample: tuple[Settings, SampleSummary],
                                                       truth: pd.DataFrame) -> None:
    settings, _ = sample
    assert list(truth.columns) == ["user_id", "persona", "persona_start", "switch_day", "signup_date"]
    assert list(truth["user_id"]) == [f"u{i:06d}" for i in range(1, USERS + 1)]
    assert set(truth["persona_start"]) == set(PERSONA_NAMES)
    assert set(truth["persona"]) <= set(PERSONA_NAMES)
    switched = truth["switch_day"] != ""
    assert 0.5 * settings.sample.switch_share < switched.mean() < 1.5 * settings.sample.switch_share
    assert (truth.loc[switched, "persona"] != truth.loc[switched, "persona_start"]).all()
    assert (truth.loc[~switched, "persona"] == truth.loc[~switched, "persona_start"]).all()
    start, end = history(settings)
    signup = pd.to_datetime(truth["signup_date"])
    explorer = truth["persona_start"] == "new_explorer"
    assert (signup[explorer] > pd.Timestamp(start.date())).all()
    assert (signup[~explorer] < pd.Timestamp(start.date())).all()
    switch_days = pd.to_datetime(truth.loc[switched, "switch_day"])
    assert switch_days.between(pd.Timestamp(start.date()), pd.Timestamp(end.date())).all()


def test_personas_drive_spend_browsing_and_decay(sample: tuple[Settings, SampleSummary], truth: pd.DataFrame) -> None:
    settings, summary = sample
    steady = truth[truth["switch_day"] == ""].set_index("user_id")["persona"]
    orders = read_csv(summary.files["orders"], ";").drop_duplicates(["order_id", "status"])
    buys = orders[orders["status"] == "completed"]
    total = pd.to_numeric(buys["total"], errors="coerce")
    total = total.where(total < 20 * total.median())  # leave the (deliberate) ×100 outliers out
    spend = total.groupby(buys["customer_id"]).sum().reindex(steady.index, fill_value=0)
    mean_spend = spend.groupby(steady).mean()
    assert mean_spend["loyal_big_spender"] > 5 * mean_spend["window_shopper"]
    aov = total.groupby(buys["customer_id"].map(steady)).median()
    assert aov["bargain_hunter"] < 40 < aov["loyal_big_spender"]
    count = buys.groupby("customer_id").size().reindex(steady.index, fill_value=0).groupby(steady).mean()
    assert count["window_shopper"] < 1 < count["bargain_hunter"]
    # drifting_away users fade: much less signed-in activity in the last third than in the first third
    app = read_csv(summary.files["app"], ",")
    web, _, _ = read_jsonl(summary.files["web"])
    when = pd.concat([
        pd.to_datetime(pd.to_numeric(app["epoch_ms"], errors="coerce"), unit="ms", utc=True),
        pd.to_datetime(web["ts"], format="ISO8601", utc=True),
    ], ignore_index=True)
    persona = pd.concat([app["customer_ref"], web["user_id"]], ignore_index=True).map(steady)
    start, end = history(settings)
    third = (end - start) / 3
    early, late = when < pd.Timestamp(start) + third, when >= pd.Timestamp(end) - third
    drifting = persona == "drifting_away"
    steady_kinds = persona.isin(["loyal_big_spender", "bargain_hunter", "window_shopper"])
    drift_ratio = (drifting & late).sum() / (drifting & early).sum()
    steady_ratio = (steady_kinds & late).sum() / (steady_kinds & early).sum()
    assert drift_ratio < 0.6 and drift_ratio < 0.6 * steady_ratio  # steady personas do not fade


def test_purchases_mostly_follow_a_cart_add_of_the_same_product(sample: tuple[Settings, SampleSummary]) -> None:
    _, summary = sample
    web, _, _ = read_jsonl(summary.files["web"])
    web["when"] = pd.to_datetime(web["ts"], format="ISO8601", utc=True)
    web["user"] = web.groupby("session_id")["user_id"].transform("first")  # the session's signed-in user
    app = read_csv(summary.files["app"], ",")
    app["when"] = pd.to_datetime(pd.to_numeric(app["epoch_ms"], errors="coerce"), unit="ms", utc=True)
    app["user"] = app.groupby("session")["customer_ref"].transform("first")
    carts = pd.concat([
        web.loc[web["event"] == "add_to_cart", ["user", "product_id", "when"]],
        app.loc[app["action"] == "cart_add", ["user", "item_sku", "when"]].rename(columns={"item_sku": "product_id"}),
    ]).dropna()
    orders = read_csv(summary.files["orders"], ";")
    buys = orders[orders["status"] == "completed"].drop_duplicates("order_id")
    when = pd.to_datetime(buys["order_date"]).dt.tz_localize("Europe/Berlin", ambiguous="NaT").dt.tz_convert("UTC")
    buys = buys.assign(when=when).dropna(subset=["when", "sku"])
    pairs = buys.merge(carts, left_on=["customer_id", "sku"], right_on=["user", "product_id"], suffixes=("", "_cart"))
    delta = pairs["when"] - pairs["when_cart"]
    hit = pairs[(delta > pd.Timedelta(0)) & (delta < pd.Timedelta(hours=2))]["order_id"].nunique()
    assert hit > 0.7 * len(buys)


# --------------------------------------------------------------------------- mess


def _exact_duplicates(lines: list[str]) -> int:
    return len(lines) - len(set(lines))


def test_mess_has_duplicates_malformed_rows_and_outliers(messy: tuple[Settings, SampleSummary]) -> None:
    settings, summary = messy
    rate = settings.sample.mess_rate
    web_lines = data_lines(summary.files["web"], header=False)
    assert 0.5 * rate < _exact_duplicates(web_lines) / len(web_lines) < 2 * rate
    _, broken, total = read_jsonl(summary.files["web"])
    assert 0.2 * rate / 5 < len(broken) / total < 3 * rate / 5
    assert all(not ln.endswith("}") for ln in broken)  # truncated objects
    _, broken_social, _ = read_jsonl(summary.files["social"])
    assert broken_social
    app_lines = data_lines(summary.files["app"], header=True)
    wrong_width = [ln for ln in app_lines if ln.count(",") != 8]
    not_ms = [ln for ln in app_lines if ln.count(",") == 8 and not ln.split(",")[4].isdigit()]
    assert wrong_width and not_ms
    order_lines = data_lines(summary.files["orders"], header=True)
    wrong_width = [ln for ln in order_lines if ln.count(";") != 9]
    not_number = [ln for ln in order_lines if ln.count(";") == 9
                  and not re.fullmatch(r"\d+\.\d\d", ln.split(";")[5])]  # "n/a" or decimal commas
    assert 0 < len(wrong_width) + len(not_number) < 3 * rate / 5 * len(order_lines)
    orders = read_csv(summary.files["orders"], ";")
    total_num = pd.to_numeric(orders["total"], errors="coerce")
    assert total_num.max() > 50 * total_num.median()  # totals typed in cents
    buys = orders[orders["status"] == "completed"]
    files_per_order = buys.groupby("order_id")["_file"].nunique()
    assert (files_per_order > 1).any()  # the same order exported in two drops
    web, _, _ = read_jsonl(summary.files["web"])
    views = web[web["event"] == "product_view"]
    assert views["category"].isna().any() and views["product_id"].isna().any()


def test_default_mess_rate_is_small_but_present(sample: tuple[Settings, SampleSummary]) -> None:
    settings, summary = sample
    rate = settings.sample.mess_rate
    lines = [ln for name in ("web", "social") for ln in data_lines(summary.files[name], header=False)]
    _, broken, total = read_jsonl(summary.files["web"] + summary.files["social"])
    assert 0 < _exact_duplicates(lines) < 3 * rate * len(lines)
    assert 0 < len(broken) < rate * total


def test_no_mess_when_mess_rate_is_zero(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", mess_rate=0.0)
    summary = generate_sample_data(settings, users=60, days=DAYS)
    assert summary.rows_written == summary.events
    for name, files in summary.files.items():
        lines = data_lines(files, header=settings.channels[name].format == "csv")
        assert _exact_duplicates(lines) == 0, name
    _, broken, _ = read_jsonl(summary.files["web"] + summary.files["social"])
    assert broken == []
    orders = read_csv(summary.files["orders"], ";")
    assert pd.to_numeric(orders["total"], errors="raise").notna().all()
    assert np.all(orders.groupby(["order_id", "status"]).size() == 1)
