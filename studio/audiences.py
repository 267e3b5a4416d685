"""Saved audiences: a segment and/or a filter over persona fields, exported as CSV or synced to a
destination. Definitions live in ``<data>/studio/audiences.json`` (written atomically); a webhook's
signing secret is never stored, only the name of the environment variable that holds it."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from base.config import Condition, ConfigError, SegmentRule, Settings
from base.segments import rule_matches
from studio.files import read_json, studio_dir, write_json

PERSONA_FIELDS = ("predicted_spend", "churn_risk")
"""Numeric persona fields a filter may use (kept in the persona history, so past membership is known)."""
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class Audience(BaseModel):
    """One saved audience."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., description="lower-case letters, digits, - and _ (names its files and payloads)")
    description: str = ""
    segment: str = Field("", description="members must be in this segment (empty: any)")
    conditions: list[Condition] = Field(default_factory=list, description="and these persona-field conditions")
    destination: Literal["none", "webhook", "csv"] = "none"
    url: str = Field("", description="webhook: where the JSON payload is POSTed")
    secret_env: str = Field("", description="webhook: environment variable holding the signing secret")
    folder: str = Field("", description="csv: folder the change files are dropped in (relative: under the data dir)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.match(v):
            raise ValueError("use 1 to 63 lower-case letters, digits, '-' or '_', starting with a letter or digit")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Audience:
        for c in self.conditions:
            if c.field not in PERSONA_FIELDS:
                raise ValueError(f"filter field {c.field!r} is not a persona field; use one of {', '.join(PERSONA_FIELDS)}")
        if not self.segment and not self.conditions:
            raise ValueError("choose a segment or add at least one filter condition")
        if self.destination == "webhook":
            if not re.match(r"^https?://[^\s/]+", self.url):
                raise ValueError("webhook url must start with http:// or https:// and name a host")
            if not re.match(r"^[A-Z_][A-Z0-9_]*$", self.secret_env):
                raise ValueError("webhook secret_env must name an environment variable (e.g. PERSONA_HOOK_SECRET)")
        if self.destination == "csv" and not self.folder.strip():
            raise ValueError("csv destination needs a folder")
        return self

    def members(self, personas: pd.DataFrame) -> np.ndarray:
        """Mask of the rows of ``personas`` (user_id, segment, persona fields) in this audience."""
        n = len(personas)
        mask = np.ones(n, dtype=bool) if not self.segment else (personas["segment"].astype(str).to_numpy() == self.segment)
        if self.conditions:
            values = {f: personas[f].to_numpy(dtype=float) for f in PERSONA_FIELDS if f in personas.columns}
            mask &= rule_matches(SegmentRule(name=self.name, all=self.conditions), values, n)
        return mask

    def csv_folder(self, settings: Settings) -> Path:
        """Where the CSV drop writes."""
        p = Path(self.folder).expanduser()
        return p if p.is_absolute() else Path(settings.data_dir) / p


def _path(settings: Settings) -> Path:
    return studio_dir(settings) / "audiences.json"


def load_audiences(settings: Settings) -> dict[str, Audience]:
    """Every saved audience by name."""
    raw = read_json(_path(settings), {})
    out = {}
    for name, body in raw.items():
        try:
            out[name] = Audience.model_validate(body)
        except ValidationError as e:
            raise ConfigError(f"{_path(settings)}: audience {name!r} is invalid: {e}") from e
    return out


def save_audience(settings: Settings, audience: Audience) -> None:
    """Add or replace an audience."""
    found = {k: v.model_dump() for k, v in load_audiences(settings).items()}
    found[audience.name] = audience.model_dump()
    write_json(_path(settings), found)


def delete_audience(settings: Settings, name: str) -> None:
    """Remove an audience (its delivery log stays)."""
    found = {k: v.model_dump() for k, v in load_audiences(settings).items() if k != name}
    write_json(_path(settings), found)


def export_csv(audience: Audience, personas: pd.DataFrame) -> bytes:
    """The audience's current members as CSV (user id, segment, persona fields)."""
    cols = [c for c in ("user_id", "segment", *PERSONA_FIELDS) if c in personas.columns]
    buf = io.StringIO()
    personas.loc[audience.members(personas), cols].to_csv(buf, index=False)
    return buf.getvalue().encode()
