"""Doppler recommendation rule table: the papers' default, custom rules, the threshold, and bad tables."""

from __future__ import annotations

import numpy as np
import pytest

from urep.explain.recommendation import DEFAULT_RULES, RecommendationRules, recommend

FLOW = ["MV", "MA", "TR"]
QUALITY = ["good", "low"]


def _one_hot(indices, width, p=0.9):
    probs = np.full((len(indices), width), (1 - p) / (width - 1))
    probs[np.arange(len(indices)), indices] = p
    return probs


def test_paper_default_excludes_only_low_quality_tr():
    # images: TR/low, TR/good, MV/low, MA/good
    flow = _one_hot([2, 2, 0, 1], 3)
    quality = _one_hot([1, 0, 1, 0], 2)
    result = recommend(flow, quality, None, FLOW, QUALITY)
    assert [r["decision"] for r in result] == ["exclude", "usable", "usable", "usable"]
    assert "low-quality TR" in result[0]["reason"] and result[0]["rule"] == 0
    assert result[1]["reason"] == "no rule matched" and result[1]["rule"] is None
    assert (result[0]["flow"], result[0]["quality"]) == ("TR", "low")
    assert result[0]["flow_prob"] == pytest.approx(0.9)
    assert [r["index"] for r in result] == [0, 1, 2, 3]


def test_quality_class_order_is_taken_from_the_head():
    flow = _one_hot([2], 3)
    quality = np.array([[0.2, 0.8]])
    assert recommend(flow, quality, None, FLOW, ["good", "low"])[0]["decision"] == "exclude"
    assert recommend(flow, quality, None, FLOW, ["low", "good"])[0]["decision"] == "usable"


def test_custom_rules_first_match_wins_with_lists_and_wildcards():
    rules = {
        "rules": [
            {"flow": "*", "quality": "low", "decision": "exclude", "reason": "any low quality"},
            {"flow": ["MV", "MA"], "quality": "*", "decision": "usable", "reason": "valve flows"},
        ],
        "default": "exclude",
    }
    flow = _one_hot([2, 0, 1, 2], 3)
    quality = _one_hot([1, 1, 0, 0], 2)
    result = recommend(flow, quality, rules, FLOW, QUALITY)
    assert [(r["decision"], r["rule"]) for r in result] == [("exclude", 0), ("exclude", 0), ("usable", 1), ("exclude", None)]
    assert result[2]["reason"] == "valve flows"


def test_threshold_excludes_uncertain_images_first():
    rules = RecommendationRules.paper_default().with_threshold(0.7)
    flow = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1]])
    quality = np.array([[0.9, 0.1], [0.35, 0.65], [0.95, 0.05]])
    result = recommend(flow, quality, rules, FLOW, QUALITY)
    assert [r["decision"] for r in result] == ["exclude", "exclude", "usable"]
    assert result[0]["reason"] == "uncertain: flow probability 0.500 < 0.7"
    assert result[1]["reason"] == "uncertain: quality probability 0.650 < 0.7"
    assert result[0]["rule"] is None
    no_threshold = recommend(flow, quality, RecommendationRules.paper_default(), FLOW, QUALITY)
    # without the threshold the second image (TR, low quality) is excluded by the paper's rule instead
    assert [(r["decision"], r["rule"]) for r in no_threshold] == [("usable", None), ("exclude", 0), ("usable", None)]


def test_round_trip_and_default_table():
    rules = RecommendationRules.from_dict(DEFAULT_RULES)
    assert RecommendationRules.from_dict(rules.to_dict()) == rules
    assert rules.to_dict() == DEFAULT_RULES


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"rules": [{"flow": "TR", "quality": "low"}]}, "rule 0 lacks 'decision'"),
        ({"rules": [{"flow": "TR", "quality": "low", "decision": "drop"}]}, "decision must be one of"),
        ({"rules": [{"flow": "", "quality": "low", "decision": "exclude"}]}, "'flow' is an empty string"),
        ({"rules": [{"flow": [], "quality": "low", "decision": "exclude"}]}, "'flow' must be a class name"),
        ({"rules": [{"flow": "TR", "qualty": "low", "decision": "exclude"}]}, "unknown keys \\['qualty'\\]"),
        ({"rules": {"flow": "TR"}}, "'rules' must be a list"),
        ({"rules": [], "default": "maybe"}, "default must be one of"),
        ({"rules": [], "threshold": 1.5}, "threshold must be a number in \\(0, 1\\]"),
        ({"rules": [], "threshold": "0.5"}, "threshold must be a number"),
        ({"rules": [], "thresh": 0.5}, "unknown keys \\['thresh'\\]"),
        (["TR"], "must be a mapping"),
    ],
)
def test_bad_rule_tables_raise(table, message):
    with pytest.raises(ValueError, match=message):
        RecommendationRules.from_dict(table)


def test_rules_naming_unknown_classes_raise():
    rules = {"rules": [{"flow": "Tr", "quality": "low", "decision": "exclude"}]}
    with pytest.raises(ValueError, match=r"flow class\(es\) \['Tr'\] unknown; the flow head has classes \['MV', 'MA', 'TR'\]"):
        recommend(_one_hot([0], 3), _one_hot([0], 2), rules, FLOW, QUALITY)


def test_probability_shapes_checked():
    with pytest.raises(ValueError, match="flow_probs must be \\(N, 3\\)"):
        recommend(np.ones((2, 2)), _one_hot([0, 1], 2), None, FLOW, QUALITY)
    with pytest.raises(ValueError, match="2 images but quality_probs has 1"):
        recommend(_one_hot([0, 1], 3), _one_hot([0], 2), None, FLOW, QUALITY)
