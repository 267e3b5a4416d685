"""Keyed pseudonyms, the production key check and the door's scrubbing of inbox files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from base.config import ConfigError, Settings, load_settings
from base.pseudonym import pseudonym, scrub_properties, scrub_text, suppression_token
from base.suppression import Suppression, add_tokens
from ingestion.privacy import lines_with, scrub_file
from tests.conftest import PROJECT

pytestmark = pytest.mark.privacy


def test_pseudonym_is_keyed_and_not_a_plain_or_public_salted_hash() -> None:
    a = pseudonym("Jane.Doe@Example.com ", "k1-secret-secret-secret", "email")
    assert a == pseudonym("jane.doe@example.com", "k1-secret-secret-secret", "email")
    assert a != pseudonym("jane.doe@example.com", "k2-secret-secret-secret", "email")
    for guess in ("jane.doe@example.com", "persona-dev-salt:jane.doe@example.com", "persona:jane.doe@example.com"):
        assert a != hashlib.sha256(guess.encode()).hexdigest()
    assert pseudonym(f"pii.email.{a}", "other", "email") == a  # a token passes its pseudonym through
    assert suppression_token("jane.doe@example.com", "k1-secret-secret-secret") != a


@pytest.mark.parametrize("value", ["", "persona-dev-salt", "persona", "short"])
def test_production_refuses_a_missing_public_or_short_key(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONA_PROFILE", "production")
    monkeypatch.setenv("PERSONA_HASH_SALT", value)
    with pytest.raises(ConfigError, match="PERSONA_HASH_SALT"):
        load_settings(PROJECT / "persona.yaml")
    monkeypatch.setenv("PERSONA_PROFILE", "default")
    load_settings(PROJECT / "persona.yaml")  # the default profile runs with the public key
    monkeypatch.setenv("PERSONA_PROFILE", "production")
    monkeypatch.setenv("PERSONA_HASH_SALT", "a-private-key-of-enough-length")
    assert load_settings(PROJECT / "persona.yaml").profile == "production"


def test_text_and_properties_lose_emails_phones_and_personal_keys() -> None:
    key = "k" * 20
    text = scrub_text('{"to":"Jane.Doe@example.com","tel":"+49-170-5551234","ts":"2026-10-01T10:00:00+01:00"}', key)
    assert "@" not in text and "5551234" not in text and "+01:00" in text
    assert f"pii.email.{pseudonym('jane.doe@example.com', key, 'email')}" in text
    props = json.loads(scrub_properties(json.dumps({"Email": "a@b.org", "name": "Jane", "plan": "gold"}),
                                        {"email": "hash", "name": "drop"}, key))
    assert props == {"Email": f"pii.email.{pseudonym('a@b.org', key, 'email')}", "plan": "gold"}


@pytest.mark.parametrize("text", ["+49-170-5551234", "x+49-170-5551234", "++49-170-5551234", "1+49-170-5551234",
                                  " +49-170-5551234 ", "tel:+491705551234,+44-20-7946-0958", "a +4917055512 b",
                                  "+491", "\u00e9+49-170-5551234", "10:00:00+01:00,+49-170-5551234"])
def test_phone_pattern_starts_where_the_lookbehind_first_pattern_did(text: str) -> None:
    """The pattern leads with its literal ``+`` (fast scanning); it finds exactly what the original
    look-behind-first pattern found: no phone after a word character or another ``+``."""
    import re

    from base.pseudonym import PHONE

    reference = re.compile(r"(?<![\w+])\+\d[\d\-]{6,}\d")
    assert [m.span() for m in PHONE.finditer(text)] == [m.span() for m in reference.finditer(text)]


def test_inbox_file_scrubbed_at_the_door_and_suppressed_lines_dropped(settings: Settings, tmp_path: Path) -> None:
    cfg = settings.channels["orders"]
    path = tmp_path / "orders.csv"
    path.write_text("order_id;customer_id;email\nO1;u1;Jane@Example.com\nO2;u2;bob@example.org\n")
    changed, removed = scrub_file(path, cfg, settings, frozenset())
    text = path.read_text()
    assert changed and removed == 0 and "@" not in text and text.startswith("order_id;customer_id;email\n")
    tokens = frozenset({suppression_token("u2", settings.hash_salt)})
    assert scrub_file(path, cfg, settings, tokens) == (True, 1)
    assert path.read_text().count("\n") == 2 and "u2" not in path.read_text()
    assert lines_with("a;u1\nb;u10\n", ["u1"]) == ("b;u10\n", 1)  # whole identifiers only


def test_suppression_checker_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    check = Suppression(path, "key-" * 5)
    assert not check.suppressed("u1")
    add_tokens(path, [suppression_token("u1", "key-" * 5)])
    assert check.suppressed("u1") and not check.suppressed("u2")
    assert add_tokens(path, [suppression_token("u1", "key-" * 5)]) == 0


def test_an_export_delivered_again_byte_for_byte_loses_forgotten_people(settings: Settings) -> None:
    import os

    from base.paths import DataPaths
    from ingestion.ingest import pending_files
    from ingestion.ledger import BatchRecord, append_record, file_digest
    from ingestion.privacy import admit_files

    paths = DataPaths(settings.data_dir)
    crm = settings.data_dir / "raw" / "crm"
    crm.mkdir(parents=True)
    text = "ticket customer opened topic\nT1 u1 2026-10-01T10:00:00Z a\nT2 u2 2026-10-01T10:00:00Z b\n"
    (crm / "a.txt").write_text(text)
    append_record(paths.ledger, BatchRecord("crm-a", "crm", "raw/crm/a.txt", file_digest(crm / "a.txt"), 2, 2, 0, 0,
                                            "accepted", "", "t"))
    add_tokens(paths.suppression, [suppression_token("u1", settings.hash_salt)])
    os.utime(paths.suppression, (1, 1))  # the erasure happened before the delivery below
    (crm / "again.txt").write_text(text)
    assert admit_files(settings, pending_files(settings, paths)) == []  # nothing to ingest
    assert "u1" not in (crm / "again.txt").read_text() and "u2" in (crm / "again.txt").read_text()
