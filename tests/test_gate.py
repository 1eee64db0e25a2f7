"""The CI gate against a plain Python count of risky samples."""

from __future__ import annotations

import datetime
import hashlib
import math

import numpy as np
import pytest

from leakaudit.config import AllowEntry, GateRule, config_from_dict
from leakaudit.config.loading import parse_yaml
from leakaudit.errors import ConfigError
from leakaudit.gate import Baseline, evaluate_gate, expired_warning, parse_rule

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


# --- issue 12: not configured, percentile rules, baseline, allowlist hash/expiry, :FRACTION ---

SHA = [hashlib.sha256(i.encode()).hexdigest() for i in IDS]  # stand-in content hashes
TODAY = datetime.date(2026, 6, 15)


def baseline_of(ids, values, content=None, score="grad_norm") -> Baseline:
    return Baseline(
        path="base.json",
        sha256="0" * 64,
        ids=list(ids),
        content=list(content) if content is not None else [None] * len(ids),
        scores={score: np.asarray(values, dtype=np.float64)},
    )


def test_no_rules_is_not_configured_and_passes() -> None:
    res = evaluate_gate(IDS, {"i2f": I2F}, [], [], DIRS)
    assert res.passed and not res.configured and res.to_dict()["configured"] is False
    assert evaluate_gate(IDS, {"i2f": I2F}, [GateRule("i2f", 0.5)], [], DIRS).configured


@pytest.mark.parametrize("p", [50.0, 75.0, 95.0])
def test_percentile_rule_reads_the_scan_without_a_baseline_and_the_baseline_with_one(
    p: float,
) -> None:
    rule = GateRule("grad_norm", percentile=p, max_fraction=1.0)
    own = evaluate_gate(IDS, {"grad_norm": GRAD}, [rule], [], DIRS).rules[0]
    t = float(np.percentile(GRAD, p, method="higher"))  # a sample's value, safe side
    assert own.reference == "scan" and own.threshold == pytest.approx(t)
    assert own.offending == count_risky(GRAD, t, below=False)
    assert own.risky <= (100 - p) / 100 * len(IDS)  # never more than 100-p % by construction
    old = np.array([0.5, 1.0, 1.5, 2.0, np.nan, 2.5, 3.0, 3.5, 4.0, 4.5])  # NaN ignored
    base = baseline_of([f"old{i}" for i in range(10)], old)
    res = evaluate_gate(IDS, {"grad_norm": GRAD}, [rule], [], DIRS, baseline=base).rules[0]
    t_base = float(np.percentile(old[np.isfinite(old)], p, method="higher"))
    assert res.reference == "baseline" and res.threshold == pytest.approx(t_base)
    # No baseline sample shares an id or content: every risky sample is new.
    assert res.offending == count_risky(GRAD, t_base, below=False) and res.known == []
    assert "p" + f"{p:g}@baseline" in res.describe()


def slow_new_known_fixed(ids, content, values, base, threshold):
    """Reference: offending now/then by a plain loop; matched by id or content hash."""
    now = [k for k, v in enumerate(values) if math.isnan(v) or v > threshold]
    then = [j for j, v in enumerate(base.scores["grad_norm"]) if math.isnan(v) or v > threshold]
    then_keys = {base.ids[j] for j in then} | {base.content[j] for j in then if base.content[j]}
    now_keys = {ids[k] for k in now} | {content[k] for k in now}
    new = [ids[k] for k in now if ids[k] not in then_keys and content[k] not in then_keys]
    known = [ids[k] for k in now if ids[k] in then_keys or content[k] in then_keys]
    fixed = [
        base.ids[j] for j in then if base.ids[j] not in now_keys and base.content[j] not in now_keys
    ]
    return new, known, fixed


def test_baseline_counts_only_new_offenders_matched_by_id_or_content() -> None:
    values = GRAD.copy()
    values[2] = np.nan  # unmeasured now, and in the baseline too: known, not failing
    # Baseline: s7 offended (same id); s8 offended under its old name (same content);
    # s2 was NaN; "gone" offended and is not risky any more (fixed); s9 is new.
    base_ids = ["s7", "renamed-s8", "s2", "gone", "s0"]
    base_content = [SHA[7], SHA[8], SHA[2], "f" * 64, SHA[0]]
    base_vals = [9.0, 9.0, np.nan, 9.0, 0.0]
    base = baseline_of(base_ids, base_vals, base_content)
    rule = GateRule("grad_norm", 6.5, max_fraction=0.0)
    res = evaluate_gate(IDS, {"grad_norm": values}, [rule], [], DIRS, content=SHA, baseline=base)
    r = res.rules[0]
    new, known, fixed = slow_new_known_fixed(IDS, SHA, values, base, 6.5)
    assert (
        (r.offending, r.known, r.fixed)
        == (new, known, fixed)
        == (
            ["s9"],
            ["s2", "s7", "s8"],
            ["gone"],
        )
    )
    assert r.risky == 1 and r.non_finite == [] and not r.passed  # s9 is new, 0% tolerated
    assert res.baseline == {
        "path": "base.json",
        "sha256": "0" * 64,
        "samples": 5,
        "rules": [{"rule": r.describe(), "new": 1, "known": 3, "fixed": 1}],
    }
    # With s9 offending in the baseline too, nothing is new: the gate passes.
    base = baseline_of([*base_ids, "s9"], [*base_vals, 10.0], [*base_content, None])
    res = evaluate_gate(IDS, {"grad_norm": values}, [rule], [], DIRS, content=SHA, baseline=base)
    assert res.passed and res.rules[0].known == ["s2", "s7", "s8", "s9"]
    assert res.offending == []


def test_allowlist_by_content_hash_and_expiry() -> None:
    rule = GateRule("grad_norm", 6.5, max_fraction=0.0)
    scores = {"grad_norm": GRAD}
    allow = [
        AllowEntry(sha256=SHA[7].upper(), reason="renamed, same image"),
        AllowEntry("s8", "valid through today", expires="2026-06-15"),
        AllowEntry("s9", "expired", expires="2026-06-14"),
        AllowEntry(sha256="a" * 64, reason="not in this scan"),
    ]
    res = evaluate_gate(IDS, scores, [rule], allow, DIRS, content=SHA, today=TODAY)
    r = res.rules[0]
    assert r.allowlisted == ["s7", "s8"] and r.offending == ["s9"] and r.considered == 8
    assert res.expired_allowlist == [{"id": "s9", "reason": "expired", "expires": "2026-06-14"}]
    assert res.unused_allowlist == ["sha256:" + "a" * 64]
    assert res.allowlist[0] == {"sha256": SHA[7], "reason": "renamed, same image"}
    assert "s9" in expired_warning(res.expired_allowlist[0])
    # A day later the s8 entry has expired too.
    later = evaluate_gate(
        IDS, scores, [rule], allow, DIRS, content=SHA, today=TODAY + datetime.timedelta(days=1)
    )
    assert later.rules[0].offending == ["s8", "s9"] and len(later.expired_allowlist) == 2


@pytest.mark.parametrize(
    ("text", "fraction"),
    [("i2f<0.5:5%", 0.05), ("i2f<0.5:0.05", 0.05), ("i2f<0.5", 0.2), ("i2f<0.5:100%", 1.0)],
)
def test_parse_rule_with_its_own_fraction(text: str, fraction: float) -> None:
    rule = parse_rule(text, max_fraction=0.2)
    assert rule.max_fraction == pytest.approx(fraction) and rule.threshold == 0.5


def test_parse_percentile_rules_and_bad_fractions() -> None:
    rule = parse_rule("grad_norm>p95@baseline:1%")
    assert (rule.percentile, rule.reference, rule.threshold, rule.max_fraction) == (
        95.0,
        "baseline",
        None,
        pytest.approx(0.01),
    )
    assert parse_rule("i2f<p5").reference == "auto"
    for bad in ("i2f<0.5:150%", "i2f<0.5:x", "i2f<0.5:-1", "i2f<p500", "i2f<p@baseline"):
        with pytest.raises((ValueError, ConfigError)):
            parse_rule(bad)


def test_config_checks_percentile_baseline_allowlist_dates() -> None:
    raw = {"gate": {"rules": [{"score": "grad_norm", "percentile": 95, "reference": "baseline"}]}}
    with pytest.raises(ConfigError, match=r"gate.rules\[0\].reference: .*gate.baseline"):
        config_from_dict(raw)
    raw["gate"]["baseline"] = "base.json"
    assert config_from_dict(raw).gate.rules[0].percentile == 95
    both = {"gate": {"rules": [{"score": "i2f", "threshold": 1, "percentile": 5}]}}
    with pytest.raises(ConfigError, match="not both"):
        config_from_dict(both)
    yaml_date = parse_yaml("gate:\n  allowlist:\n  - {id: a, reason: r, expires: 2026-01-31}\n")
    assert config_from_dict(yaml_date).gate.allowlist[0].expires == "2026-01-31"
    for entry, key in (
        ({"id": "a", "reason": "r", "expires": "31/01/2026"}, "expires"),
        ({"id": "a", "reason": "r", "expires": "2026-02-30"}, "expires"),
        ({"sha256": "abc", "reason": "r"}, "sha256"),
        ({"reason": "r"}, "id"),
    ):
        with pytest.raises(ConfigError, match=rf"gate.allowlist\[0\].{key}"):
            config_from_dict({"gate": {"allowlist": [entry]}})


def test_a_percentile_of_the_scan_itself_tolerates_its_own_tail_at_any_size() -> None:
    rule = GateRule("grad_norm", percentile=95, risky_when="above", max_fraction=0.1)
    for n in (1, 2, 6, 10, 33):
        ids, values = [f"s{i}" for i in range(n)], np.linspace(0.0, 1.0, n)
        assert evaluate_gate(ids, {"grad_norm": values}, [rule], [], DIRS).passed
        values[0] = np.nan  # an unmeasured sample still fails it
        assert not evaluate_gate(ids, {"grad_norm": values}, [rule], [], DIRS).passed
