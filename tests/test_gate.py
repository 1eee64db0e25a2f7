"""The CI gate against a plain Python count of risky samples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from leakaudit.config import AllowEntry, GateRule
from leakaudit.errors import ConfigError
from leakaudit.gate import evaluate_gate, parse_rule

IDS = [f"s{i}" for i in range(10)]
I2F = np.array([0.1, 2.0, 0.4, 3.0, float("nan"), 5.0, 0.2, 7.0, 8.0, 9.0])
GRAD = np.arange(10, dtype=np.float64)
DIRS = {"i2f": "lower_is_riskier", "grad_norm": "higher_is_riskier"}


def count_risky(values, threshold, below, allowed=()):
    """Slow reference: risky when beyond the threshold or not a number."""
    out = []
    for sid, v in zip(IDS, values, strict=True):
        if sid in allowed:
            continue
        if math.isnan(v) or (v < threshold if below else v > threshold):
            out.append(sid)
    return out


@pytest.mark.parametrize("max_fraction", [0.0, 0.3, 0.4, 0.5])
def test_direction_aware_threshold_and_fraction(max_fraction: float) -> None:
    rules = [GateRule("i2f", 0.5, max_fraction), GateRule("grad_norm", 6.5, max_fraction)]
    res = evaluate_gate(IDS, {"i2f": I2F, "grad_norm": GRAD}, rules, [], DIRS)
    want_i2f = count_risky(I2F, 0.5, below=True)  # s0, s2, s4 (NaN), s6
    want_grad = count_risky(GRAD, 6.5, below=False)  # s7, s8, s9
    assert res.rules[0].offending == want_i2f and res.rules[0].risky_when == "below"
    assert res.rules[1].offending == want_grad and res.rules[1].risky_when == "above"
    # s4's i2f is NaN: never tolerated, whatever the fraction.
    assert res.rules[0].passed == (len(want_i2f) / 10 <= max_fraction and not np.isnan(I2F).any())
    assert res.rules[0].non_finite == ["s4"] and res.rules[1].non_finite == []
    assert res.rules[1].passed == (len(want_grad) / 10 <= max_fraction)
    assert res.passed == (res.rules[0].passed and res.rules[1].passed)
    failed = [r for r in res.rules if not r.passed]
    assert set(res.offending) == {i for r in failed for i in r.offending}


def test_allowlist_removes_samples_from_count_and_denominator() -> None:
    allow = [AllowEntry("s0", "public image"), AllowEntry("s2", "consent"), AllowEntry("zz", "x")]
    res = evaluate_gate(IDS, {"i2f": I2F}, [GateRule("i2f", 0.5, 0.25)], allow, DIRS)
    rule = res.rules[0]
    assert rule.offending == count_risky(I2F, 0.5, True, allowed={"s0", "s2"}) == ["s4", "s6"]
    assert rule.considered == 8 and rule.fraction == 2 / 8
    assert not rule.passed and rule.non_finite == ["s4"]  # within the fraction, but NaN
    assert rule.allowlisted == ["s0", "s2"]
    assert res.unused_allowlist == ["zz"]
    assert res.allowlist[0] == {"id": "s0", "reason": "public image"}
    allow.append(AllowEntry("s4", "scored separately"))  # allowlisted, its NaN is ignored
    rule = evaluate_gate(IDS, {"i2f": I2F}, [GateRule("i2f", 0.5, 0.25)], allow, DIRS).rules[0]
    assert rule.offending == ["s6"] and rule.non_finite == [] and rule.passed


def test_any_risky_sample_fails_with_zero_fraction_and_explicit_side() -> None:
    res = evaluate_gate(IDS, {"i2f": I2F}, [GateRule("i2f", 8.5, 0.0, "above")], [], DIRS)
    assert not res.passed and res.offending == ["s4", "s9"]
    assert evaluate_gate(IDS, {"i2f": I2F}, [], [], DIRS).passed  # no rules: pass


def test_parse_rule() -> None:
    rule = parse_rule("i2f<0.5", 0.1)
    assert (rule.score, rule.threshold, rule.max_fraction, rule.risky_when) == (
        "i2f",
        0.5,
        0.1,
        "below",
    )
    assert parse_rule("grad_norm>1e-3").risky_when == "above"
    with pytest.raises(ValueError, match="SCORE<VALUE"):
        parse_rule("i2f=3")
    with pytest.raises(ValueError):
        parse_rule("i2f<abc")
    with pytest.raises(ConfigError, match="unknown score"):
        parse_rule("i2g<1")
