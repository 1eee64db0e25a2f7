"""Cross-validated choice of the ranking rule, and an honest estimate of how well it ranks.

For k folds: on the k−1 training folds, rank every candidate (every score in both
directions, and the rank average of the two best), pick the best, fit the monotone map
feature → PSNR; predict the held-out fold. The pooled held-out predictions give the
procedure's Spearman ρ with measured PSNR and the residuals of the prediction interval.
That held-out ρ is the figure to trust: it measures the whole procedure, the choice
among candidates included (k ≥ 2 is required; there is no in-sample version of it).

The rule used from then on is chosen by the same criterion on all samples, and its map
refitted on them. Each score's plain Spearman ρ on all samples is also reported, with a
percentile bootstrap interval (``scipy.stats.bootstrap``), as a description: a fixed
rule fits nothing, but the best of several such ρ is optimistic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from leakaudit.calibration.candidates import Candidate, Scores, singles
from leakaudit.calibration.monotone import MonotoneMap
from leakaudit.metrics.agreement import bootstrap_ci as agreement_ci


class CalibrationError(ValueError):
    """The data cannot support a calibration (too few samples, nothing recovered, ...)."""


@dataclass(frozen=True)
class CandidateResult:
    """One candidate's held-out Spearman ρ with measured PSNR.

    Attributes:
        candidate: the rule (one score, in its better direction on these samples).
        rho: its Spearman ρ with PSNR on all calibration samples (descriptive: not held
            out, and the largest of several is optimistic).
        ci95: percentile bootstrap 95% interval of ``rho`` (None when undefined).
    """

    candidate: Candidate
    rho: float
    ci95: tuple[float, float] | None

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            **self.candidate.to_dict(),
            "spearman": _num(self.rho),
            "ci95": list(self.ci95) if self.ci95 else None,
        }


@dataclass(frozen=True)
class CrossValidation:
    """The outcome of :func:`cross_validate`.

    Attributes:
        candidates: every candidate's held-out result, best first.
        chosen: the rule used from now on (best held-out ρ), refitted on all samples.
        procedure_rho: held-out ρ of the whole procedure (choice and map fitted
            without the fold), with its bootstrap 95% interval.
        folds_chosen: the rule each fold's training part chose (stability).
        map: the monotone map feature → PSNR on all samples, with the interval from
            held-out residuals.
        reference: the calibration samples' scores that the chosen rule's feature is
            measured against (rank averages need them at scan time).
        k: folds.
    """

    candidates: tuple[CandidateResult, ...]
    chosen: Candidate
    procedure_rho: float
    procedure_ci95: tuple[float, float] | None
    folds_chosen: tuple[Candidate, ...]
    map: MonotoneMap
    reference: Scores
    k: int

    def predict(self, scores: Scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predicted PSNR and its interval ``(mid, low, high)`` for new samples' scores."""
        feature = self.chosen.feature(scores, self.reference)
        low, high = self.map.interval(feature)
        return self.map(feature), low, high


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman ρ over the finite pairs (NaN when fewer than 3 or constant)."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(stats.spearmanr(a[ok], b[ok]).statistic)


def bootstrap_ci(
    a: np.ndarray, b: np.ndarray, seed: int, n_resamples: int = 999
) -> tuple[float, float] | None:
    """Percentile bootstrap 95% interval of Spearman ρ over paired samples.

    A resample on which ρ is undefined (it drew one value of ``a`` or of ``b`` only, as
    happens when few samples were recovered and the rest share the floor target) has no
    value: the interval is the percentiles of the defined resamples, as in
    :func:`leakaudit.metrics.agreement.bootstrap_ci` (scipy's own would be NaN). None
    when fewer than 2 resamples are defined.
    """
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 4 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return None
    ci, _ = agreement_ci(a[ok], b[ok], "spearman", n_resamples=n_resamples, seed=seed)
    return ci


def folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    """``k`` disjoint held-out index sets covering ``range(n)``, seeded."""
    return np.array_split(np.random.default_rng(seed).permutation(n), k)


def _subset(scores: Scores, idx: np.ndarray) -> Scores:
    return {k: np.asarray(v, dtype=np.float64)[idx] for k, v in scores.items()}


def _pair(ranked: list[tuple[float, Candidate]]) -> Candidate | None:
    """Rank average of the two best singles on different scores."""
    first = ranked[0][1]
    for _, c in ranked[1:]:
        if c.scores[0] != first.scores[0]:
            return Candidate((first.scores[0], c.scores[0]), (first.signs[0], c.signs[0]))
    return None


def choose(scores: Scores, target: np.ndarray, names: list[str]) -> Candidate:
    """The candidate with the largest ρ on these samples (used on training folds only)."""
    ranked = sorted(
        ((spearman(c.feature(scores), target), c) for c in singles(names)),
        key=lambda t: -np.nan_to_num(t[0], nan=-np.inf),
    )
    best = ranked[0]
    pair = _pair(ranked)
    if pair is not None:
        rho = spearman(pair.feature(scores), target)
        if np.nan_to_num(rho, nan=-np.inf) > np.nan_to_num(best[0], nan=-np.inf):
            return pair
    return best[1]


def _check(n: int, k: int) -> None:
    if k < 2:
        raise CalibrationError(
            "cross-validation needs k ≥ 2 folds: an in-sample ρ would overstate the ranking"
        )
    if n < 3 * k:
        raise CalibrationError(
            f"{n} samples are too few for {k}-fold cross-validation (need {3 * k})"
        )


def cross_validate(
    scores: Scores,
    target: np.ndarray,
    *,
    k: int = 4,
    seed: int = 0,
    coverage: float = 0.8,
) -> CrossValidation:
    """Choose the ranking rule and fit the feature → PSNR map, cross-validated.

    Args:
        scores: score name → ``[N]`` values of the calibration samples.
        target: ``[N]`` measured PSNR (dB) of the attack on each sample.
        k: folds (≥ 2).
        seed: fold assignment and bootstrap seed.
        coverage: nominal coverage of the prediction interval.

    Raises:
        CalibrationError: too few samples for ``k`` folds, or k < 2.
    """
    y = np.asarray(target, dtype=np.float64)
    names = list(scores)
    _check(len(y), k)
    pooled = np.full(len(y), np.nan)
    chosen_per_fold = []
    for test in folds(len(y), k, seed):
        train = np.setdiff1d(np.arange(len(y)), test)
        tr, te = _subset(scores, train), _subset(scores, test)
        rule = choose(tr, y[train], names)
        chosen_per_fold.append(rule)
        fitted = MonotoneMap.fit(rule.feature(tr), y[train])
        pooled[test] = fitted(rule.feature(te, tr))
    best = choose(scores, y, names)  # the same criterion the held-out ρ measured
    final = MonotoneMap.fit(best.feature(scores), y).with_interval(y - pooled, coverage)
    return CrossValidation(
        candidates=_describe(scores, y, names, seed),
        chosen=best,
        procedure_rho=spearman(pooled, y),
        procedure_ci95=bootstrap_ci(pooled, y, seed),
        folds_chosen=tuple(chosen_per_fold),
        map=final,
        reference={k_: np.asarray(v, dtype=np.float64) for k_, v in scores.items()},
        k=k,
    )


def _describe(
    scores: Scores, y: np.ndarray, names: list[str], seed: int
) -> tuple[CandidateResult, ...]:
    """Each score (its better direction) on all calibration samples, best first.

    Descriptive: a fixed rule fits nothing, so this is its plain Spearman ρ; the best of
    several is optimistic (selection is not corrected here: the procedure's held-out ρ is).
    """
    rows = []
    for name in names:
        up = Candidate((name,), (1,))
        feat = up.feature(scores)
        rho = spearman(feat, y)
        rule = up if not rho < 0 else Candidate((name,), (-1,))
        feat = rule.feature(scores)
        rows.append(CandidateResult(rule, abs(rho), bootstrap_ci(feat, y, seed)))
    return tuple(sorted(rows, key=lambda r: -np.nan_to_num(r.rho, nan=-np.inf)))


def _num(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)
