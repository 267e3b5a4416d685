"""Persona feature definitions (the Feast repo).

A flat module of declared objects, as in Feast's own template: the entity, the sources
(``*_source``), the feature views (``*_fv``) and the versioned feature services. Source paths are
relative: Feast resolves them against the data directory that ``persona`` opens the store with.

To add a feature view: declare it here, preview with ``persona features plan``, then
``persona features apply`` and check it with ``persona features list``.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, Project, PushSource, ValueType
from feast.types import Float64, Int64

OWNER = "persona-data-science"
TAGS = {"owner": OWNER, "team": "persona"}

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
    path="features/user_behaviour.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="Daily user behaviour snapshots computed from the clean event store",
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
        _f("days_since_last_purchase", Float64, "Days from the last purchase to the snapshot (null if none)"),
        _f("days_since_last_event", Float64, "Days from the last event to the snapshot"),
        _f("tenure_days", Int64, "Days since the user was first seen"),
        _f("events_7d", Int64, "Behaviour events in the last 7 days"),
        _f("events_30d", Int64, "Behaviour events in the last 30 days"),
        _f("sessions_30d", Int64, "Sessions started in the last 30 days"),
        _f("page_views_30d", Int64, "Page views in the last 30 days"),
        _f("product_views_30d", Int64, "Product views in the last 30 days"),
        _f("searches_30d", Int64, "Searches in the last 30 days"),
        _f("add_to_cart_30d", Int64, "Add-to-cart events in the last 30 days"),
        _f("cart_conversion_30d", Float64, "Purchases per add-to-cart over 30 days (null without carts)"),
        _f("active_days_30d", Int64, "Days with any event in the last 30 days"),
        _f("social_30d", Int64, "Social interactions (like, share, comment) in the last 30 days"),
        _f("support_tickets_90d", Int64, "Support tickets in the last 90 days"),
        _f("share_app_30d", Float64, "Share of the last 30 days' events from the app"),
        _f("share_web_30d", Float64, "Share of the last 30 days' events from the web"),
        _f("spend_trend", Float64, "Spend over 30 days vs the 90-day monthly average"),
        _f("events_trend", Float64, "Events over 7 days vs the 30-day weekly average"),
        _f("affinity_electronics", Float64, "Share of 90-day category interactions in electronics"),
        _f("affinity_fashion", Float64, "Share of 90-day category interactions in fashion"),
        _f("affinity_home", Float64, "Share of 90-day category interactions in home"),
        _f("affinity_beauty", Float64, "Share of 90-day category interactions in beauty"),
        _f("affinity_sports", Float64, "Share of 90-day category interactions in sports"),
        _f("affinity_grocery", Float64, "Share of 90-day category interactions in grocery"),
    ],
    online=True,
    source=user_behaviour_source,
    description="What a user did over the last 7/30/90 days, as of each daily snapshot",
    tags=TAGS,
)

user_activity_push_source = PushSource(
    name="user_activity_push_source",
    batch_source=FileSource(
        name="user_activity_batch_source",
        path="features/user_activity.parquet",
        timestamp_field="event_timestamp",
    ),
    description="Real-time activity pushed by the serving path",
)

user_activity_fv = FeatureView(
    name="user_activity",
    entities=[user],
    ttl=timedelta(days=2),
    schema=[
        _f("events_today", Int64, "Events since midnight UTC, pushed in real time"),
        _f("purchases_today", Int64, "Purchases since midnight UTC, pushed in real time"),
        _f("spend_today", Float64, "Spend since midnight UTC, pushed in real time"),
    ],
    online=True,
    source=user_activity_push_source,
    description="Fresh activity from the real-time event path",
    tags=TAGS,
)

persona_v1 = FeatureService(
    name="persona_v1",
    features=[user_behaviour_fv],
    description="Exactly the features the persona models use (version 1)",
    tags=TAGS,
)
