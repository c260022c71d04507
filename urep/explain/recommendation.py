"""Doppler recommendation: merge the flow-type and quality heads into "usable" / "exclude" per image.

The papers' derivable task 2 (preprint Fig. 7; journal Fig. 9) gives one rule and no thresholds, so the
decision is a rule table (`RecommendationRules`): rules are checked in order, the first whose `flow` and
`quality` both match decides, else `default`; an optional `threshold` excludes uncertain images first.
`DEFAULT_RULES` is the papers' rule: exclude low-quality TR, everything else usable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DECISIONS = ("usable", "exclude")
ANY = "*"

#: The papers' rule (preprint "U-Rep 2" results): low-quality TR flows are excluded, everything else usable.
DEFAULT_RULES: dict[str, Any] = {
    "rules": [
        {
            "flow": "TR",
            "quality": "low",
            "decision": "exclude",
            "reason": "low-quality TR flow: unclear envelope, excluded from measurement",
        }
    ],
    "default": "usable",
    "threshold": None,
}


#: Task names tried in order when the flow-type head is not named: the experiment configs' name
#: (`urep/experiments/configs/doppler_heterogeneous_phantom.yaml`), then the short one.
FLOW_TASK_NAMES = ("flow_classification", "flow")
#: Task names tried in order when the quality head is not named (same sources as `FLOW_TASK_NAMES`).
QUALITY_TASK_NAMES = ("quality_assessment", "quality")


def pick_recommendation_tasks(
    classification_tasks: Sequence[str],
    flow_task: str | None = None,
    quality_task: str | None = None,
) -> tuple[str, str]:
    """The flow-type and quality heads to merge: the given names, else the first of `FLOW_TASK_NAMES` /
    `QUALITY_TASK_NAMES` that is a classification task of the run.

    Args:
        classification_tasks: names of the run's classification tasks.
        flow_task: the flow-type task, or `None` to pick one.
        quality_task: the quality task, or `None` to pick one.

    Returns:
        `(flow_task, quality_task)`.

    Raises:
        ValueError: a head was not named and none of the usual names is a classification task of the run.
    """
    picked = []
    for role, given, candidates in (("flow", flow_task, FLOW_TASK_NAMES),
                                    ("quality", quality_task, QUALITY_TASK_NAMES)):
        if given is None:
            given = next((name for name in candidates if name in classification_tasks), None)
        if given is None:
            raise ValueError(f"no {role} task among the run's classification tasks {sorted(classification_tasks)} "
                             f"(looked for {list(candidates)}); name it with --{role}-task")
        picked.append(given)
    return picked[0], picked[1]


def _as_name_set(value: Any, where: str) -> frozenset[str] | None:
    """`"*"` -> None (matches anything); a name or list of names -> frozenset."""
    if value == ANY:
        return None
    if isinstance(value, str):
        if not value:
            raise ValueError(f"{where} is an empty string; give a class name, a list of them or '*'")
        return frozenset([value])
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v for v in value):
        return frozenset(value)
    raise ValueError(f"{where} must be a class name, a non-empty list of class names or '*', got {value!r}")


@dataclass(frozen=True)
class RecommendationRule:
    """One row of the rule table.

    Attributes:
        flow: flow classes this rule applies to (`None` = any).
        quality: quality classes this rule applies to (`None` = any).
        decision: `"usable"` or `"exclude"`.
        reason: text reported with the decision.
    """

    flow: frozenset[str] | None
    quality: frozenset[str] | None
    decision: str
    reason: str

    def matches(self, flow: str, quality: str) -> bool:
        return (self.flow is None or flow in self.flow) and (self.quality is None or quality in self.quality)

    def to_dict(self) -> dict[str, Any]:
        def names(value: frozenset[str] | None) -> Any:
            if value is None:
                return ANY
            return next(iter(value)) if len(value) == 1 else sorted(value)

        return {"flow": names(self.flow), "quality": names(self.quality), "decision": self.decision,
                "reason": self.reason}


@dataclass(frozen=True)
class RecommendationRules:
    """The validated rule table (see the module docstring).

    Attributes:
        rules: rows, first match wins.
        default: decision when no rule matches.
        threshold: exclude as "uncertain" when either head's top probability is below it; `None` = off.
    """

    rules: tuple[RecommendationRule, ...] = field(default_factory=tuple)
    default: str = "usable"
    threshold: float | None = None

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> RecommendationRules:
        """Validate a rule table read from JSON/YAML (e.g. `models/manifest.json["recommendation"]`).

        Args:
            record: `{"rules": [{"flow", "quality", "decision", "reason"?}, ...], "default"?: str,
                "threshold"?: float | null}`.

        Returns:
            The rule table.

        Raises:
            ValueError: unknown keys, a missing or malformed field, an unknown decision, or a threshold
                outside (0, 1]; the message names the offending rule and key.
        """
        if not isinstance(record, Mapping):
            raise ValueError(f"recommendation rules must be a mapping, got {type(record).__name__}")
        unknown = set(record) - {"rules", "default", "threshold"}
        if unknown:
            raise ValueError(f"recommendation rules: unknown keys {sorted(unknown)}; allowed: rules, default, threshold")
        raw_rules = record.get("rules", [])
        if not isinstance(raw_rules, (list, tuple)):
            raise ValueError(f"recommendation rules: 'rules' must be a list, got {type(raw_rules).__name__}")
        rules = tuple(_parse_rule(raw, index) for index, raw in enumerate(raw_rules))
        default = record.get("default", "usable")
        if default not in DECISIONS:
            raise ValueError(f"recommendation rules: default must be one of {DECISIONS}, got {default!r}")
        threshold = record.get("threshold")
        return cls(rules=rules, default=default, threshold=_check_threshold(threshold))

    @classmethod
    def paper_default(cls) -> RecommendationRules:
        """`DEFAULT_RULES`: exclude low-quality TR, everything else usable, no threshold."""
        return cls.from_dict(DEFAULT_RULES)

    def with_threshold(self, threshold: float | None) -> RecommendationRules:
        """A copy with another probability threshold (`None` = off)."""
        return RecommendationRules(self.rules, self.default, _check_threshold(threshold))

    def to_dict(self) -> dict[str, Any]:
        return {"rules": [rule.to_dict() for rule in self.rules], "default": self.default,
                "threshold": self.threshold}

    def check_classes(self, flow_classes: Sequence[str], quality_classes: Sequence[str]) -> None:
        """Raise `ValueError` when a rule names a class the heads do not have (a typo would never match)."""
        for index, rule in enumerate(self.rules):
            for head, names, known in (("flow", rule.flow, flow_classes), ("quality", rule.quality, quality_classes)):
                missing = sorted((names or frozenset()) - set(known))
                if missing:
                    raise ValueError(
                        f"recommendation rule {index}: {head} class(es) {missing} unknown; the {head} head has "
                        f"classes {list(known)}"
                    )


def _check_threshold(threshold: Any) -> float | None:
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ValueError(f"recommendation threshold must be a number in (0, 1] or null, got {threshold!r}")
    return float(threshold)


def _parse_rule(raw: Any, index: int) -> RecommendationRule:
    where = f"recommendation rule {index}"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must be a mapping, got {raw!r}")
    unknown = set(raw) - {"flow", "quality", "decision", "reason"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed: flow, quality, decision, reason")
    for key in ("flow", "quality", "decision"):
        if key not in raw:
            raise ValueError(f"{where} lacks {key!r} (use '*' for any class)")
    decision = raw["decision"]
    if decision not in DECISIONS:
        raise ValueError(f"{where}: decision must be one of {DECISIONS}, got {decision!r}")
    reason = raw.get("reason", f"rule {index}")
    if not isinstance(reason, str) or not reason:
        raise ValueError(f"{where}: reason must be a non-empty string, got {reason!r}")
    return RecommendationRule(
        flow=_as_name_set(raw["flow"], f"{where} 'flow'"),
        quality=_as_name_set(raw["quality"], f"{where} 'quality'"),
        decision=decision,
        reason=reason,
    )


def _check_probs(probs: Any, classes: Sequence[str], name: str) -> np.ndarray:
    array = np.asarray(probs, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != len(classes):
        raise ValueError(f"{name} must be (N, {len(classes)}) for classes {list(classes)}, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def recommend(
    flow_probs: Any,
    quality_probs: Any,
    rules: RecommendationRules | Mapping[str, Any] | None,
    flow_classes: Sequence[str],
    quality_classes: Sequence[str],
) -> list[dict[str, Any]]:
    """Decide per image whether it is usable for measurement.

    Args:
        flow_probs: `(N, len(flow_classes))` flow-type head probabilities.
        quality_probs: `(N, len(quality_classes))` quality head probabilities, same images.
        rules: a `RecommendationRules`, its dict form, or `None` for `DEFAULT_RULES` (the papers' rule).
        flow_classes: flow head class names in output order (e.g. `["MV", "MA", "TR"]`).
        quality_classes: quality head class names in output order (e.g. `["good", "low"]`).

    Returns:
        One dict per image: `{"index", "flow", "flow_prob", "quality", "quality_prob", "decision"
        ("usable" | "exclude"), "reason", "rule" (index of the deciding rule; None for the threshold or the
        default)}`.

    Raises:
        ValueError: shapes disagree with the class lists, probabilities are not finite, or a rule names a
            class the heads do not have.
    """
    if rules is None:
        rules = RecommendationRules.paper_default()
    elif isinstance(rules, Mapping):
        rules = RecommendationRules.from_dict(rules)
    flow_classes = [str(c) for c in flow_classes]
    quality_classes = [str(c) for c in quality_classes]
    rules.check_classes(flow_classes, quality_classes)
    flow = _check_probs(flow_probs, flow_classes, "flow_probs")
    quality = _check_probs(quality_probs, quality_classes, "quality_probs")
    if flow.shape[0] != quality.shape[0]:
        raise ValueError(f"flow_probs has {flow.shape[0]} images but quality_probs has {quality.shape[0]}")

    decisions = []
    for index, (flow_row, quality_row) in enumerate(zip(flow, quality, strict=True)):
        flow_name, flow_p = flow_classes[int(flow_row.argmax())], float(flow_row.max())
        quality_name, quality_p = quality_classes[int(quality_row.argmax())], float(quality_row.max())
        record = {"index": index, "flow": flow_name, "flow_prob": flow_p, "quality": quality_name,
                  "quality_prob": quality_p}
        record.update(_decide(rules, flow_name, flow_p, quality_name, quality_p))
        decisions.append(record)
    return decisions


def _decide(rules: RecommendationRules, flow: str, flow_p: float, quality: str, quality_p: float) -> dict[str, Any]:
    if rules.threshold is not None:
        unsure = [f"{head} probability {p:.3f}" for head, p in (("flow", flow_p), ("quality", quality_p))
                  if p < rules.threshold or math.isnan(p)]
        if unsure:
            return {"decision": "exclude", "reason": f"uncertain: {' and '.join(unsure)} < {rules.threshold:g}",
                    "rule": None}
    for index, rule in enumerate(rules.rules):
        if rule.matches(flow, quality):
            return {"decision": rule.decision, "reason": rule.reason, "rule": index}
    return {"decision": rules.default, "reason": "no rule matched", "rule": None}
