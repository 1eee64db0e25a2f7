"""The CI gate: pass/fail rules over per-sample scores, with an allowlist.

A rule flags a sample as *risky* when its score is beyond a threshold in the rule's
direction (``below`` for ``i2f < τ``, ``above`` for ``grad_norm > t``); a non-finite
score (NaN, ±inf) counts as risky. The rule fails when the risky, non-allowlisted samples
are more than ``max_fraction`` of the non-allowlisted samples (``max_fraction: 0``: any),
and whenever a non-allowlisted sample's score is not finite: a sample that could not be
measured is never tolerated, whatever ``max_fraction`` says. The gate passes when every
rule passes; with no rules it is *not configured* (and passes). Exit codes: see
:mod:`leakaudit.errors`.

A percentile rule (``grad_norm > p95``) takes its threshold from a reference
distribution: the baseline report's values of the score when there is one, else this
scan's. With a :class:`Baseline` (``--baseline``, bandit's ``-b``), a sample offending a
rule counts only when it did not offend the same rule in the baseline (matched by id or
content hash): those are *new*; the others are *known* and never fail the gate; samples
that offended in the baseline and no longer do are *fixed*.

Allowlist entries name a sample by id and/or content hash (``content_sha256``); an
entry past its ``expires`` date no longer suppresses and is reported.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from leakaudit.config import AllowEntry, GateRule
from leakaudit.direction import Direction, sign
from leakaudit.errors import InputError


@dataclass(frozen=True)
class Baseline:
    """A previous scan report, as the gate compares with it.

    Attributes:
        path: where it was read.
        sha256: SHA-256 of the file.
        ids: ``[M]`` its sample ids.
        content: ``[M]`` its samples' content hashes (``None`` where it has none).
        scores: score name (and ``psnr`` when calibrated) → ``[M]`` values (NaN: null).
    """

    path: str
    sha256: str
    ids: list[str]
    content: list[str | None]
    scores: dict[str, np.ndarray]


@dataclass(frozen=True)
class RuleResult:
    """One rule, evaluated.

    Attributes:
        score: the score the rule reads.
        risky_when: ``"below"`` or ``"above"`` the threshold.
        threshold: the threshold applied (a percentile rule's, resolved; ±inf, null in
            JSON, when this scan has no finite value to take it from).
        max_fraction: the largest tolerated fraction of risky samples.
        considered: samples not allowlisted.
        risky: risky samples among them (with a baseline: the new ones).
        fraction: ``risky / considered`` (0 when nothing is considered).
        passed: ``fraction <= max_fraction`` and no considered score is non-finite.
        offending: ids of the risky, non-allowlisted samples, in dataset order (with a
            baseline: the new ones).
        allowlisted: ids of allowlisted samples that would have been risky.
        non_finite: ids of the counted samples whose score is NaN or ±inf (also in
            ``offending``); any of them fails the rule.
        percentile: the rule's percentile (``None``: a plain threshold).
        reference: where the threshold comes from: ``"threshold"`` (the rule's value),
            ``"baseline"`` or ``"scan"`` (a percentile of that report's values).
        known: with a baseline, risky samples that already offended in it (not counted).
        fixed: with a baseline, its ids that offended and no longer do.
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
    percentile: float | None = None
    reference: Literal["threshold", "baseline", "scan"] = "threshold"
    known: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """``i2f < 0.5 for at most 0% of samples`` — the rule in words."""
        op = "<" if self.risky_when == "below" else ">"
        if self.percentile is None:
            value = f"{self.threshold:g}"
        else:
            value = f"p{self.percentile:g}@{self.reference} (= {self.threshold:.4g})"
        return f"{self.score} {op} {value} for at most {self.max_fraction:.0%}"

    def tally(self) -> str:
        """``3/10`` risky samples, and how many of them have a non-finite score."""
        text = f"{self.risky}/{self.considered}"
        if self.known:
            text += f" new ({len(self.known)} known)"
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
        allowlist: the configured entries ``{"id", "reason"}`` (and ``sha256``,
            ``expires`` where given).
        unused_allowlist: active allowlist entries that name no sample of this scan.
        configured: whether there is any rule (``False``: the gate is not configured).
        expired_allowlist: entries past their ``expires`` date (they suppress nothing).
        baseline: the comparison with the baseline report (``None`` without one):
            ``path``, ``sha256``, ``samples`` and per rule ``new``/``known``/``fixed``.
    """

    passed: bool
    rules: list[RuleResult] = field(default_factory=list)
    offending: list[str] = field(default_factory=list)
    allowlist: list[dict[str, str]] = field(default_factory=list)
    unused_allowlist: list[str] = field(default_factory=list)
    configured: bool = True
    expired_allowlist: list[dict[str, str]] = field(default_factory=list)
    baseline: dict[str, Any] | None = None

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


def resolve_threshold(
    rule: GateRule,
    side: Literal["below", "above"],
    values: np.ndarray,
    baseline: Baseline | None,
) -> tuple[float, Literal["threshold", "baseline", "scan"]]:
    """The rule's threshold, and where it comes from: its own value, else its percentile
    of the baseline's values of the score (else of ``values``, this scan's).

    The percentile is a value of the reference itself, on the safe side (numpy's
    ``method="higher"`` for a rule risky above it, ``"lower"`` below): at most
    ``100 - p`` percent of the reference's samples are beyond it, so a percentile of this
    scan flags no more than that fraction, whatever the number of samples.

    Raises:
        InputError: the reference has no finite value of the score.
    """
    if rule.percentile is None:
        assert rule.threshold is not None
        return float(rule.threshold), "threshold"
    if baseline is not None:
        ref, where = baseline.scores[rule.score], "baseline"
    else:
        ref, where = values, "scan"
    finite = ref[np.isfinite(ref)]
    if not finite.size and baseline is None:  # nothing measured: every sample is risky
        return (np.inf if side == "above" else -np.inf), "scan"
    if not finite.size:
        raise InputError(
            f"gate rule on {rule.score}: the {where} has no finite {rule.score} value to take "
            f"the {rule.percentile:g}th percentile of"
        )
    source: Literal["baseline", "scan"] = "baseline" if baseline is not None else "scan"
    if side == "above":
        return float(np.percentile(finite, rule.percentile, method="higher")), source
    return float(np.percentile(finite, rule.percentile, method="lower")), source


def _matches(entry: AllowEntry, ids: Sequence[str], content: Sequence[str | None]) -> np.ndarray:
    return np.array(
        [
            (entry.id is not None and entry.id == i)
            or (entry.sha256 is not None and entry.sha256 == c)
            for i, c in zip(ids, content, strict=True)
        ],
        dtype=bool,
    )


def expired_warning(entry: Mapping[str, str]) -> str:
    """The warning for an expired allowlist entry (``GateResult.expired_allowlist``)."""
    name = entry.get("id") or f"sha256:{entry.get('sha256')}"
    return (
        f"allowlist entry {name!r} expired on {entry.get('expires')}: it no longer "
        "suppresses (renew or remove it)"
    )


def _entry(entry: AllowEntry) -> dict[str, str]:
    return {k: v for k, v in asdict(entry).items() if v is not None}


def evaluate_gate(
    ids: Sequence[str],
    scores: Mapping[str, np.ndarray],
    rules: Sequence[GateRule],
    allowlist: Sequence[AllowEntry],
    directions: Mapping[str, Direction],
    *,
    content: Sequence[str | None] | None = None,
    baseline: Baseline | None = None,
    today: datetime.date | None = None,
) -> GateResult:
    """Evaluate ``rules`` over the samples.

    Args:
        ids: ``[N]`` sample ids.
        scores: score name → ``[N]`` values (must hold every rule's score).
        rules: the gate rules.
        allowlist: samples to ignore, with reasons.
        directions: score name → risk direction used when a rule does not say.
        content: ``[N]`` the samples' content hashes (allowlist ``sha256``, baseline
            matching); default: none known.
        baseline: a previous report: only samples newly offending a rule count.
        today: the date allowlist ``expires`` is compared with (default: today, UTC).

    Returns:
        The verdict with per-rule counts and offending ids.
    """
    ids = [str(i) for i in ids]
    content = list(content) if content is not None else [None] * len(ids)
    today = today or datetime.datetime.now(datetime.timezone.utc).date()
    is_allowed, unused = _allowed(allowlist, ids, content, today)
    samples = _Samples(ids, content, is_allowed)
    results = [_evaluate_rule(rule, directions, scores, samples, baseline) for rule in rules]
    offending = {i for r in results if not r.passed for i in r.offending}
    return GateResult(
        passed=all(r.passed for r in results),
        rules=results,
        offending=[i for i in ids if i in offending],
        allowlist=[_entry(e) for e in allowlist],
        unused_allowlist=unused,
        configured=bool(rules),
        expired_allowlist=[_entry(e) for e in allowlist if e.expired(today)],
        baseline=None if baseline is None else _baseline_summary(baseline, results),
    )


@dataclass(frozen=True)
class _Samples:
    """The scanned samples as the rules see them."""

    ids: list[str]
    content: list[str | None]
    allowed: np.ndarray

    def pick(self, mask: np.ndarray) -> list[str]:
        return [self.ids[k] for k in np.flatnonzero(mask)]


def _allowed(
    allowlist: Sequence[AllowEntry],
    ids: list[str],
    content: list[str | None],
    today: datetime.date,
) -> tuple[np.ndarray, list[str]]:
    """``[N]`` allowlisted by an entry that has not expired, and the entries matching none."""
    is_allowed = np.zeros(len(ids), dtype=bool)
    unused = []
    for entry in (e for e in allowlist if not e.expired(today)):
        hit = _matches(entry, ids, content)
        is_allowed |= hit
        if not hit.any():
            unused.append(entry.names())
    return is_allowed, unused


def _evaluate_rule(
    rule: GateRule,
    directions: Mapping[str, Direction],
    scores: Mapping[str, np.ndarray],
    samples: _Samples,
    baseline: Baseline | None,
) -> RuleResult:
    """One rule over the samples (only new offenders count when there is a baseline)."""
    side = rule_direction(rule, directions[rule.score])
    values = np.asarray(scores[rule.score], dtype=np.float64)
    threshold, reference = resolve_threshold(rule, side, values, baseline)
    beyond = risky_mask(values, threshold, side)
    risky = beyond & ~samples.allowed
    known = np.zeros(len(samples.ids), dtype=bool)
    fixed: list[str] = []
    if baseline is not None:
        known, fixed = _compare(
            baseline, rule.score, threshold, side, samples.ids, samples.content, risky
        )
    counted = risky & ~known
    considered = int((~samples.allowed).sum())
    fraction = int(counted.sum()) / considered if considered else 0.0
    unmeasured = samples.pick(~np.isfinite(values) & counted)
    return RuleResult(
        score=rule.score,
        risky_when=side,
        threshold=threshold,
        max_fraction=rule.max_fraction,
        considered=considered,
        risky=int(counted.sum()),
        fraction=fraction,
        passed=fraction <= rule.max_fraction and not unmeasured,
        offending=samples.pick(counted),
        allowlisted=samples.pick(beyond & samples.allowed),
        non_finite=unmeasured,
        percentile=rule.percentile,
        reference=reference,
        known=samples.pick(known),
        fixed=fixed,
    )


def _baseline_summary(baseline: Baseline, results: list[RuleResult]) -> dict[str, Any]:
    """The report's ``gate.baseline``: which baseline, and new/known/fixed per rule."""
    return {
        "path": baseline.path,
        "sha256": baseline.sha256,
        "samples": len(baseline.ids),
        "rules": [
            {"rule": r.describe(), "new": r.risky, "known": len(r.known), "fixed": len(r.fixed)}
            for r in results
        ],
    }


def _compare(
    baseline: Baseline,
    score: str,
    threshold: float,
    side: Literal["below", "above"],
    ids: list[str],
    content: list[str | None],
    risky: np.ndarray,
) -> tuple[np.ndarray, list[str]]:
    """Which of this scan's risky samples already offended in the baseline (``[N]`` bool),
    and the baseline's offending ids that no longer offend (matched by id or content)."""
    was = risky_mask(baseline.scores[score], threshold, side)
    old_ids = {baseline.ids[j] for j in np.flatnonzero(was)}
    old_content = {baseline.content[j] for j in np.flatnonzero(was)} - {None}
    known = np.array(
        [
            bool(risky[k]) and (ids[k] in old_ids or content[k] in old_content)
            for k in range(len(ids))
        ],
        dtype=bool,
    )
    now_ids = {ids[k] for k in np.flatnonzero(risky)}
    now_content = {content[k] for k in np.flatnonzero(risky)} - {None}
    fixed = [
        baseline.ids[j]
        for j in np.flatnonzero(was)
        if baseline.ids[j] not in now_ids and baseline.content[j] not in now_content
    ]
    return known, fixed


#: ``:5%`` or ``:0.05`` after a ``--fail-on`` rule: its own tolerated fraction.
_FRACTION = re.compile(r"(?P<rule>.*):(?P<value>[^:]*?)(?P<pct>%?)")
_PERCENTILE = re.compile(r"p(?P<p>[0-9.]+)(?P<ref>@baseline)?")


def parse_rule(text: str, max_fraction: float = 0.0) -> GateRule:
    """A rule from a flag, ``ValueError`` if malformed: ``SCORE<VALUE`` or ``SCORE>VALUE``,
    where ``VALUE`` is a number or ``pNN`` (the NNth percentile of the baseline's values,
    else this scan's; ``pNN@baseline`` requires a baseline), optionally followed by
    ``:FRACTION`` (``:5%`` or ``:0.05``), the rule's own ``max_fraction``."""
    body = text
    m = _FRACTION.fullmatch(text)
    if m:
        body = m["rule"]
        try:
            max_fraction = float(m["value"]) / (100.0 if m["pct"] else 1.0)
        except ValueError:
            raise ValueError(
                f"bad tolerated fraction {m['value'] + m['pct']!r}; expected e.g. :5% or :0.05"
            ) from None
        if not 0.0 <= max_fraction <= 1.0:
            raise ValueError(
                f"the tolerated fraction must be in [0, 1] (0%-100%), got {max_fraction:g}"
            )
    for op, side in (("<", "below"), (">", "above")):
        name, sep, value = body.partition(op)
        if not sep:
            continue
        side_lit: Literal["below", "above"] = "below" if side == "below" else "above"
        value = value.strip()
        pm = _PERCENTILE.fullmatch(value)
        try:
            limit: dict[str, Any] = (
                {"percentile": float(pm["p"]), "reference": "baseline" if pm["ref"] else "auto"}
                if pm
                else {"threshold": float(value)}
            )
        except ValueError:
            break
        return GateRule(score=name.strip(), max_fraction=max_fraction, risky_when=side_lit, **limit)
    raise ValueError(
        f"bad gate rule {text!r}; expected SCORE<VALUE or SCORE>VALUE with a number or a "
        "percentile pNN[@baseline], optionally :FRACTION, e.g. i2f<0.5, grad_norm>p95@baseline:5%"
    )
