"""The current persona as a feature: a view over the append-only persona history.

``persona update`` (batch) and the service's real-time rescoring append each *changed* persona to
``history/user_persona/date=YYYY-MM-DD/`` (scoring/history.py); this view makes the newest one
available to other models (point-in-time, offline) and applications (online).
"""

from datetime import timedelta

from feast import FeatureView, FileSource
from feast.data_format import ParquetFormat
from feast.types import Float64, String

from persona_repo import TAGS, _f, data_path, user

user_persona_source = FileSource(
    name="user_persona_source",
    path=data_path("history/user_persona"),
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    created_timestamp_column="scored_at",
    description="Append-only persona history (one row per changed persona; event time = feature time)",
)


user_persona_fv = FeatureView(
    name="user_persona",
    entities=[user],
    ttl=timedelta(days=3650),
    schema=[
        _f("segment", String, "Named persona (segments.yaml) the user was last assigned"),
        _f("predicted_spend", Float64, "Smoothed predicted spend over the label horizon (base currency)"),
        _f("churn_risk", Float64, "Smoothed probability of no purchase over the label horizon"),
        _f("spend_version", String, "Version of the spend model that scored it"),
        _f("churn_version", String, "Version of the churn model that scored it"),
        _f("source", String, "Who recorded it: batch (persona update) or realtime (the service)"),
    ],
    online=True,
    source=user_persona_source,
    description="The user's current persona, from the persona history",
    tags=TAGS,
)
