"""Persona feature definitions (the Feast repo).

A flat module of declared objects, as in Feast's own template: the entity, the sources
(``*_source``), the feature views (``*_fv``) and the versioned feature services. Source paths are
absolute, under ``DATA_DIR`` (the ``data/`` folder next to this repo, like the paths in
``feature_store.yaml``), so the plain ``feast`` CLI run from this folder and ``persona`` read the same
files; ``persona`` with another ``data_dir`` moves every path under ``DATA_DIR`` into it.

To add a feature view: declare it here, preview with ``feast plan`` (or ``persona features plan``), then
``feast apply`` (or ``persona features apply``) and check it with ``feast feature-views list``.
"""

from datetime import timedelta
from pathlib import Path

import pandas as pd
from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    OnDemandFeatureView,
    Project,
    PushSource,
    RequestSource,
    ValueType,
)
from feast.data_format import ParquetFormat
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64

from features.store import repo_categories, repo_snapshot_every_days
from features.time_features import BEHAVIOUR as BEHAVIOUR_TIME_FEATURES
from features.time_features import LIFETIME as LIFETIME_TIME_OUTPUTS
from features.time_features import OUTPUTS as TIME_OUTPUTS
from features.time_features import feast_udf

CATEGORIES = repo_categories(Path(__file__).resolve().parent.parent / "persona.yaml")
"""``features.categories`` of the configuration in use: one affinity feature each (none: no affinity features)."""
SNAPSHOT_EVERY_DAYS = repo_snapshot_every_days(Path(__file__).resolve().parent.parent / "persona.yaml")
"""``features.snapshot_every_days``: the snapshot grid the read-time features assume."""

OWNER = "persona-data-science"
TAGS = {"owner": OWNER, "team": "persona"}
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
"""The data directory the definitions and feature_store*.yaml name: persona.yaml's default data_dir."""


def data_path(relative: str) -> str:
    """Absolute path of a source under DATA_DIR (DuckDB reads relative paths from the working directory)."""
    return str(DATA_DIR / relative)


project = Project(name="persona", description="Dynamic user personas: behaviour features per user")

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="A known customer after identity stitching",
    tags=TAGS,
)

user_behaviour_source = FileSource(
    name="user_behaviour_source",
    path=data_path("features/user_behaviour"),
    file_format=ParquetFormat(),  # a folder of date=YYYY-MM-DD partitions
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="Sparse user behaviour snapshots (a row when a stored value changes) from the clean event store",
)


def _f(name: str, dtype, description: str) -> Field:  # noqa: ANN001
    return Field(name=name, dtype=dtype, description=description, tags={"owner": OWNER})


user_behaviour_fv = FeatureView(
    name="user_behaviour",
    entities=[user],
    ttl=timedelta(days=3650),
    schema=[
        _f("purchases_7d", Int64, "Purchases in the last 7 days"),
        _f("purchases_30d", Int64, "Purchases in the last 30 days"),
        _f("purchases_90d", Int64, "Purchases in the last 90 days"),
        _f("spend_7d", Float64, "Spend (base currency) in the last 7 days, net of nothing"),
        _f("spend_30d", Float64, "Spend (base currency) in the last 30 days"),
        _f("spend_90d", Float64, "Spend (base currency) in the last 90 days"),
        _f("aov_90d", Float64, "Average order value over 90 days (null without orders)"),
        _f("refunds_90d", Int64, "Refunds in the last 90 days"),
        _f("refund_amount_90d", Float64, "Refunded amount in the last 90 days"),
        _f("events_7d", Int64, "Behaviour events in the last 7 days"),
        _f("events_30d", Int64, "Behaviour events in the last 30 days"),
        _f("sessions_30d", Int64, "Sessions started in the last 30 days"),
        _f("page_views_30d", Int64, "Page views in the last 30 days"),
        _f("product_views_30d", Int64, "Product views in the last 30 days"),
        _f("searches_30d", Int64, "Searches in the last 30 days"),
        _f("add_to_cart_30d", Int64, "Add-to-cart events in the last 30 days"),
        _f("cart_conversion_30d", Float64, "Purchases per add-to-cart over 30 days (null without carts)"),
        _f("active_days_30d", Int64, "Days with any event in the last 30 days"),
        _f("avg_session_minutes_30d", Float64, "Average session length in minutes over 30 days (null without sessions)"),
        _f("share_mobile_30d", Float64, "Share of the last 30 days' events from mobile devices"),
        _f("social_30d", Int64, "Social interactions (like, share, comment) in the last 30 days"),
        _f("support_tickets_90d", Int64, "Support tickets in the last 90 days"),
        _f("share_app_30d", Float64, "Share of the last 30 days' events from the app"),
        _f("share_web_30d", Float64, "Share of the last 30 days' events from the web"),
        _f("spend_trend", Float64, "Spend over 30 days vs the 90-day monthly average"),
        _f("events_trend", Float64, "Events over 7 days vs the 30-day weekly average"),
        *[_f(f"affinity_{c}", Float64, f"Share of 90-day category interactions in {c}") for c in CATEGORIES],
        _f("last_event_ts", Float64, "Unix time of the user's last event before the snapshot"),
        _f("last_purchase_ts", Float64, "Unix time of the user's last purchase before the snapshot (null if none)"),
        _f("first_event_ts", Float64, "Unix time of the user's first event"),
    ],
    online=True,
    source=user_behaviour_source,
    description="What a user did over the last 7/30/90 days, as of each snapshot where it changed",
    tags=TAGS,
)

user_activity_push_source = PushSource(
    name="user_activity_push_source",
    batch_source=FileSource(
        name="user_activity_batch_source",
        path=data_path("features/user_activity"),  # a folder: each offline push appends one file
        file_format=ParquetFormat(),
        timestamp_field="event_timestamp",
    ),
    description="Real-time activity pushed by the serving path (online and offline)",
)

user_activity_fv = FeatureView(
    name="user_activity",
    entities=[user],
    ttl=timedelta(days=2),
    schema=[
        _f("activity_day", Int64, "UTC day (days since epoch) the *_today counters belong to"),
        _f("events_today", Int64, "Events since midnight UTC, pushed in real time"),
        _f("purchases_today", Int64, "Purchases since midnight UTC, pushed in real time"),
        _f("spend_today", Float64, "Spend since midnight UTC, pushed in real time"),
        _f("events_last_hour", Int64, "Events in the hour before the last push"),
        _f("last_event_ts", Float64, "Unix time of the newest real-time event"),
    ],
    online=True,
    source=user_activity_push_source,
    description="Fresh activity from the real-time event path",
    tags=TAGS,
)

request_time = RequestSource(
    name="request_time",
    schema=[Field(name="request_ts", dtype=Float64, description="Unix time the features are asked for")],
    description="When the persona is requested (serving: now; training: the cutoff)",
)


@on_demand_feature_view(
    sources=[user_behaviour_fv[["last_event_ts", "last_purchase_ts"]], request_time],
    # Feast compares these with the fields it infers from the function, so no description/tags here.
    schema=[
        Field(name="days_since_last_event_now", dtype=Float64),
        Field(name="days_since_last_purchase_now", dtype=Float64),
    ],
    mode="pandas",
    description="Recency as of the request time, not the snapshot time",
    tags=TAGS,
)
def user_recency_now(inputs: pd.DataFrame) -> pd.DataFrame:
    """Recency in days at request time (null when there was no such event)."""
    out = pd.DataFrame(index=inputs.index)
    day = 86400.0
    out["days_since_last_event_now"] = (inputs["request_ts"] - inputs["last_event_ts"]) / day
    out["days_since_last_purchase_now"] = (inputs["request_ts"] - inputs["last_purchase_ts"]) / day
    return out


MODEL_FEATURES = [f.name for f in user_behaviour_fv.features if not f.name.endswith("_ts")]
"""In declaration order (``FeatureView.schema`` is rebuilt from a set, in another order in every process)."""

user_lifetime_fv = FeatureView(
    name="user_lifetime",
    entities=[user],
    ttl=timedelta(days=3650),
    schema=[  # computed by features/lifetime.py into the same daily snapshots
        _f("lifetime_purchases", Int64, "Purchases before the snapshot, ever"),
        _f("lifetime_spend", Float64, "Spend (base currency) before the snapshot, ever"),
        _f("lifetime_purchase_days", Int64, "Days with a purchase before the snapshot, ever"),
        _f("first_purchase_ts", Float64, "Unix time of the user's first purchase (null if none)"),
        _f("first_purchase_day_spend", Float64, "Spend on the day of the first purchase (null if none)"),
        _f("btyd_frequency", Int64, "BTYD frequency: repeat purchase days (purchase days - 1)"),
        _f("btyd_recency_days", Float64, "BTYD recency: days from the first to the last purchase day (null if none)"),
        _f("avg_order_value", Float64, "Lifetime spend per purchase (null without purchases)"),
        _f("btyd_monetary", Float64, "Mean spend of the repeat purchase days (0 without repeats)"),
    ],
    online=True,
    source=user_behaviour_source,
    description="What a user bought over their whole history, and the buy-till-you-die summary",
    tags=TAGS,
)

LIFETIME_FEATURES = [f.name for f in user_lifetime_fv.features if not f.name.endswith("_ts")]
"""In declaration order (not ``schema``: see :data:`MODEL_FEATURES`); the models' feature order."""

_time_udf, _time_udf_source = feast_udf("user_time", SNAPSHOT_EVERY_DAYS)
user_time = OnDemandFeatureView(  # the grid is written into the function's text: Feast rebuilds it from the text
    name="user_time",
    sources=[user_behaviour_fv[["first_event_ts", "last_event_ts", "last_purchase_ts"]],
             user_lifetime_fv[["first_purchase_ts", "lifetime_purchase_days", "lifetime_spend"]], request_time],
    schema=[Field(name=name, dtype=Float64) for name in TIME_OUTPUTS],
    udf=_time_udf,
    udf_string=_time_udf_source,
    mode="pandas",
    description="Recency, tenure and the BTYD age as of the request time, exactly as the dense snapshot "
                "taken at the newest snapshot midnight before it gave them (features/time_features.py)",
    tags=TAGS,
)
TIME_FEATURES = list(BEHAVIOUR_TIME_FEATURES)
"""The behaviour features computed at read time (persona_v1)."""
LIFETIME_TIME_FEATURES = list(LIFETIME_TIME_OUTPUTS)
"""The lifetime features computed at read time (persona_v2)."""

persona_v1 = FeatureService(
    name="persona_v1",
    features=[user_behaviour_fv[MODEL_FEATURES], user_time[TIME_FEATURES]],
    description="Exactly the features the persona models use (version 1)",
    tags=TAGS,
)

persona_v2 = FeatureService(
    name="persona_v2",
    features=[user_behaviour_fv[MODEL_FEATURES], user_time[TIME_FEATURES + LIFETIME_TIME_FEATURES],
              user_lifetime_fv[LIFETIME_FEATURES]],
    description="The persona models' features, version 2: version 1 plus the lifetime and BTYD summary",
    tags=TAGS,
)
