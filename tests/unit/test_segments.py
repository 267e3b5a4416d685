"""Segment rules and smoothing."""

import numpy as np
import pytest

from base.config import ConfigError, SegmentRule
from base.segments import assign_segments, check_rules, smooth

RULES = [
    SegmentRule(name="vip", all=[{"field": "spend", "op": ">=", "value": 100}]),
    SegmentRule(name="risk", all=[{"field": "churn", "op": ">", "value": 0.5}]),
    SegmentRule(name="rest", all=[]),
]


def test_first_matching_rule_wins_and_nan_never_matches() -> None:
    out = assign_segments(RULES, {"spend": np.array([150, 10, np.nan, 500]), "churn": np.array([0.9, 0.9, 0.1, 0.1])}, 4)
    assert list(out) == ["vip", "risk", "rest", "vip"]


def test_unknown_field_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown field 'churn'"):
        check_rules(RULES, {"spend"})


def test_smoothing_moves_toward_target_and_converges() -> None:
    p = np.array([np.nan, 0.0])
    for _ in range(30):
        p = smooth(p, np.array([1.0, 1.0]), 0.3)
    assert p[0] == 1.0 and p[1] == pytest.approx(1.0, abs=1e-4)
    assert smooth(np.array([0.2]), np.array([1.0]), 0.5)[0] == pytest.approx(0.6)


def _write(tmp_path, text: str):  # noqa: ANN001, ANN202
    path = tmp_path / "segments.yaml"
    path.write_text(text)
    return path


def test_project_segments_file_is_valid_and_ends_with_a_catch_all() -> None:
    from pathlib import Path

    from base.config import load_segment_file

    rules = load_segment_file(Path(__file__).resolve().parents[2] / "segments.yaml")
    assert [r.name for r in rules][-1] == "casual" and rules[-1].all == []
    check_rules(rules, {f.field for r in rules for f in r.all})


def test_bad_operator_in_the_yaml_names_the_file_the_rule_and_the_key(tmp_path) -> None:  # noqa: ANN001
    from base.config import load_segment_file

    path = _write(tmp_path, "segments:\n  - name: vip\n    all:\n      - {field: spend_90d, op: '=>', value: 1}\n"
                            "  - name: rest\n    all: []\n")
    with pytest.raises(ConfigError) as e:
        load_segment_file(path)
    assert str(path) in str(e.value) and "segments[0] (vip)" in str(e.value) and "all.0.op" in str(e.value)


@pytest.mark.parametrize(("text", "message"), [
    ("segments:\n  - name: vip\n    all:\n      - {field: spend_90d, op: '>', value: 1}\n", "catch-all"),
    ("segments:\n  - name: a\n    all: []\n  - name: a\n    all: []\n", "unique"),
    ("rules: []\n", "top-level 'segments:'"),
    ("segments:\n  - name: vip\n    all:\n      - {field: spend_90d, op: '>', value: lots}\n  - name: r\n", "value"),
])
def test_invalid_segment_files_are_clear_errors(tmp_path, text: str, message: str) -> None:  # noqa: ANN001
    from base.config import load_segment_file

    with pytest.raises(ConfigError, match=message):
        load_segment_file(_write(tmp_path, text))


def test_persona_yaml_loads_segments_from_the_file(tmp_path) -> None:  # noqa: ANN001
    from pathlib import Path

    from base.config import load_settings

    project = Path(__file__).resolve().parents[2]
    cfg = tmp_path / "persona.yaml"
    text = (project / "persona.yaml").read_text().replace("segments_file: ${PERSONA_SEGMENTS_FILE:-segments.yaml}", "segments_file: mine.yaml")
    cfg.write_text(text)
    (tmp_path / "mine.yaml").write_text("segments:\n  - name: everyone\n    all: []\n")
    (tmp_path / "mlflow.yaml").write_text((project / "mlflow.yaml").read_text())  # persona.yaml names it
    s = load_settings(cfg)
    assert [r.name for r in s.segments] == ["everyone"] and s.segments_file == tmp_path / "mine.yaml"
