"""The CI gate: pass/fail rules over per-sample scores, with an allowlist.

A rule flags a sample as *risky* when its score is beyond a threshold in the rule's
direction (``below`` for ``i2f < τ``, ``above`` for ``grad_norm > t``); a non-finite
score (NaN, ±inf) counts as risky. The rule fails when the risky, non-allowlisted samples
are more than ``max_fraction`` of the non-allowlisted samples (``max_fraction: 0``: any),
and whenever a non-allowlisted sample's score is not finite: a sample that could not be
measured is never tolerated, whatever ``max_fraction`` says. The gate passes when every
rule passes. Exit codes: see :mod:`leakaudit.errors`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from leakaudit.config import AllowEntry, GateRule
from leakaudit.direction import Direction, sign


@dataclass(frozen=True)
class RuleResult:
    """One rule, evaluated.

    Attributes:
        score: the score the rule reads.
        risky_when: ``"below"`` or ``"above"`` the threshold.
        threshold: the rule's threshold.
        max_fraction: the largest tolerated fraction of risky samples.
        considered: samples not allowlisted.
        risky: risky samples among them.
        fraction: ``risky / considered`` (0 when nothing is considered).
        passed: ``fraction <= max_fraction`` and no considered score is non-finite.
        offending: ids of the risky, non-allowlisted samples, in dataset order.
        allowlisted: ids of allowlisted samples that would have been risky.
        non_finite: ids of the non-allowlisted samples whose score is NaN or ±inf (also
            in ``offending``); any of them fails the rule.
    """

    score: str
    risky_when: Literal["below", "above"]
    threshold: float
    max_fraction: float
    considered: int
    risky: int
    fraction: float
    passed: bool
    offending: list[str]
    allowlisted: list[str]
    non_finite: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """``i2f < 0.5 for at most 0% of samples`` — the rule in words."""
        op = "<" if self.risky_when == "below" else ">"
        return f"{self.score} {op} {self.threshold:g} for at most {self.max_fraction:.0%}"

    def tally(self) -> str:
        """``3/10`` risky samples, and how many of them have a non-finite score."""
        text = f"{self.risky}/{self.considered}"
        if self.non_finite:
            text += f", {len(self.non_finite)} with a non-finite {self.score} (never tolerated)"
        return text


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict.

    Attributes:
        passed: every rule passed (true when there are no rules).
        rules: each rule's result, in configuration order.
        offending: ids failing any failed rule, in dataset order.
        allowlist: the configured entries ``{"id", "reason"}``.
        unused_allowlist: allowlisted ids that are not samples of this scan.
    """

    passed: bool
    rules: list[RuleResult] = field(default_factory=list)
    offending: list[str] = field(default_factory=list)
    allowlist: list[dict[str, str]] = field(default_factory=list)
    unused_allowlist: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the JSON report."""
        return asdict(self)


def rule_direction(rule: GateRule, direction: Direction) -> Literal["below", "above"]:
    """The side of the threshold that is risky: the rule's own, else the score's."""
    if rule.risky_when is not None:
        return rule.risky_when
    return "above" if sign(direction) > 0 else "below"


def risky_mask(values: np.ndarray, threshold: float, side: Literal["below", "above"]) -> np.ndarray:
    """``[N]`` bool: beyond ``threshold`` on ``side``, or not finite."""
    with np.errstate(invalid="ignore"):
        beyond = values < threshold if side == "below" else values > threshold
    return beyond | ~np.isfinite(values)


def evaluate_gate(
    ids: Sequence[str],
    scores: Mapping[str, np.ndarray],
    rules: Sequence[GateRule],
    allowlist: Sequence[AllowEntry],
    directions: Mapping[str, Direction],
) -> GateResult:
    """Evaluate ``rules`` over the samples.

    Args:
        ids: ``[N]`` sample ids.
        scores: score name → ``[N]`` values (must hold every rule's score).
        rules: the gate rules.
        allowlist: samples to ignore, with reasons.
        directions: score name → risk direction used when a rule does not say.

    Returns:
        The verdict with per-rule counts and offending ids.
    """
    allowed = {entry.id for entry in allowlist}
    ids = [str(i) for i in ids]
    is_allowed = np.array([i in allowed for i in ids], dtype=bool)
    results = []
    offending: set[str] = set()
    for rule in rules:
        side = rule_direction(rule, directions[rule.score])
        values = np.asarray(scores[rule.score], dtype=np.float64)
        risky = risky_mask(values, rule.threshold, side)
        counted = risky & ~is_allowed
        considered = int((~is_allowed).sum())
        n_risky = int(counted.sum())
        fraction = n_risky / considered if considered else 0.0
        unmeasured = [ids[k] for k in np.flatnonzero(~np.isfinite(values) & ~is_allowed)]
        passed = fraction <= rule.max_fraction and not unmeasured
        bad = [ids[k] for k in np.flatnonzero(counted)]
        if not passed:
            offending.update(bad)
        results.append(
            RuleResult(
                score=rule.score,
                risky_when=side,
                threshold=rule.threshold,
                max_fraction=rule.max_fraction,
                considered=considered,
                risky=n_risky,
                fraction=fraction,
                passed=passed,
                offending=bad,
                allowlisted=[ids[k] for k in np.flatnonzero(risky & is_allowed)],
                non_finite=unmeasured,
            )
        )
    present = set(ids)
    return GateResult(
        passed=all(r.passed for r in results),
        rules=results,
        offending=[i for i in ids if i in offending],
        allowlist=[{"id": e.id, "reason": e.reason} for e in allowlist],
        unused_allowlist=[e.id for e in allowlist if e.id not in present],
    )


def parse_rule(text: str, max_fraction: float = 0.0) -> GateRule:
    """A rule from a flag: ``"i2f<0.5"`` or ``"grad_norm>10"``; ``ValueError`` if malformed."""
    for op, side in (("<", "below"), (">", "above")):
        name, sep, value = text.partition(op)
        if sep:
            try:
                threshold = float(value)
            except ValueError:
                break
            side_lit: Literal["below", "above"] = "below" if side == "below" else "above"
            return GateRule(
                score=name.strip(),
                threshold=threshold,
                max_fraction=max_fraction,
                risky_when=side_lit,
            )
    raise ValueError(f"bad gate rule {text!r}; expected SCORE<VALUE or SCORE>VALUE, e.g. i2f<0.5")
