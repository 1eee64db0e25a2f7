"""How well a score predicts reconstruction quality: rank correlations and precision@k.

For one score vector and one quality vector over the same validated samples:
Spearman ρ and Kendall τ-b with scipy's p-values, percentile-bootstrap 95% intervals
(resampling samples with replacement, seeded), and precision@k. A score or quality
that is constant over the samples has no rank correlation: the result says
"undefined" with a reason, never NaN.

Directions: a score is "higher_is_riskier" or "lower_is_riskier" (SPEC); a metric is
"higher_is_better" (PSNR, SSIM) or "lower_is_better" (MSE, LPIPS). If the SPEC's risk
direction is right, riskier samples reconstruct better, so the correlation between
the raw score and the raw metric has the *expected sign*
(+1 if both are "higher", −1 if exactly one is "lower", +1 if both are "lower").
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from leakaudit.direction import orient, sign

Verdict = Literal["held", "reversed", "inconclusive", "undefined"]


@dataclass(frozen=True)
class Correlation:
    """A rank correlation with its p-value and bootstrap interval.

    Attributes:
        value: the coefficient, or ``None`` when undefined.
        p_value: scipy's two-sided p-value, or ``None``.
        ci95: percentile bootstrap interval ``(lo, hi)``, or ``None``.
        n_boot: bootstrap resamples on which the coefficient was defined.
        undefined: why the coefficient is undefined, else ``None``.
    """

    value: float | None
    p_value: float | None
    ci95: tuple[float, float] | None
    n_boot: int
    undefined: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "p_value": self.p_value,
            "ci95": list(self.ci95) if self.ci95 is not None else None,
            "n_boot": self.n_boot,
            "undefined": self.undefined,
        }


def _as_array(v: ArrayLike) -> NDArray[np.float64]:
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(a)):
        raise ValueError("scores and qualities must be finite")
    return a


def undefined_reason(x: ArrayLike, y: ArrayLike) -> str | None:
    """Why a rank correlation of ``x`` and ``y`` is undefined, or ``None`` if it is not."""
    a, b = _as_array(x), _as_array(y)
    if a.shape != b.shape:
        raise ValueError(f"length mismatch: {a.shape[0]} scores, {b.shape[0]} qualities")
    if a.size < 3:
        return f"needs at least 3 samples, got {a.size}"
    if np.ptp(a) == 0:
        return "the score is constant over the validated samples"
    if np.ptp(b) == 0:
        return "the quality is constant over the validated samples"
    return None


def spearman_rows(x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    """Spearman ρ of each row pair (average ranks for ties); NaN where a row is constant.

    Args:
        x: ``[R, n]``.
        y: ``[R, n]``.

    Returns:
        ``[R]``.
    """
    rx = stats.rankdata(x, axis=1)
    ry = stats.rankdata(y, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(1) / np.where(den > 0, den, 1.0), np.nan)


def kendall_rows(
    x: NDArray[np.float64], y: NDArray[np.float64], chunk: int | None = None
) -> NDArray[np.float64]:
    """Kendall τ-b of each row pair (scipy's default variant); NaN where a row is constant.

    τ-b = Σ sign(Δx)·sign(Δy) / √(Σ|sign Δx| · Σ|sign Δy|) over all ordered pairs.

    Args:
        x: ``[R, n]``.
        y: ``[R, n]``.
        chunk: rows per vectorised block (memory ``chunk·n²``); default keeps a block
            near 2M pair entries.

    Returns:
        ``[R]``.
    """
    n = x.shape[1]
    chunk = chunk or max(1, 2_000_000 // max(n * n, 1))
    out = np.empty(x.shape[0])
    for s in range(0, x.shape[0], chunk):
        xs, ys = x[s : s + chunk], y[s : s + chunk]
        sx = np.sign(xs[:, :, None] - xs[:, None, :])
        sy = np.sign(ys[:, :, None] - ys[:, None, :])
        num = (sx * sy).sum(axis=(1, 2))
        den = np.sqrt(np.abs(sx).sum(axis=(1, 2)) * np.abs(sy).sum(axis=(1, 2)))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s : s + chunk] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out


def bootstrap_ci(
    x: ArrayLike,
    y: ArrayLike,
    method: Literal["spearman", "kendall"],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[tuple[float, float] | None, int]:
    """Percentile bootstrap interval of a rank correlation (``scipy.stats.bootstrap``,
    paired: samples are resampled with replacement, seeded by ``seed``).

    A resample on which the coefficient is undefined (a constant resample) has no value:
    the interval is then the same percentiles of the defined resamples (scipy's own
    would be NaN).

    Returns:
        ``((lo, hi), n_defined)``, or ``(None, n_defined)`` when fewer than 2 resamples
        were defined.
    """
    rows = spearman_rows if method == "spearman" else kendall_rows

    def statistic(u: NDArray[np.float64], v: NDArray[np.float64], axis: int = -1) -> Any:
        return rows(np.atleast_2d(u), np.atleast_2d(v)).reshape(np.shape(u)[:-1])

    with warnings.catch_warnings():  # undefined resamples: NaN interval, replaced below
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap(
            (_as_array(x), _as_array(y)),
            statistic,
            paired=True,
            vectorized=True,
            n_resamples=n_resamples,
            confidence_level=level,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    vals = res.bootstrap_distribution
    defined = vals[np.isfinite(vals)]
    if defined.size < 2:
        return None, int(defined.size)
    lo, hi = res.confidence_interval
    if defined.size < vals.size:
        tail = (1.0 - level) / 2 * 100
        lo, hi = np.percentile(defined, [tail, 100 - tail])
    return (float(lo), float(hi)), int(defined.size)


def correlation(
    x: ArrayLike,
    y: ArrayLike,
    method: Literal["spearman", "kendall"],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> Correlation:
    """Spearman ρ or Kendall τ-b of ``x`` and ``y`` with p-value and bootstrap 95% CI."""
    reason = undefined_reason(x, y)
    if reason is not None:
        return Correlation(None, None, None, 0, reason)
    a, b = _as_array(x), _as_array(y)
    res = stats.spearmanr(a, b) if method == "spearman" else stats.kendalltau(a, b)
    ci, n_boot = bootstrap_ci(a, b, method, n_resamples=n_resamples, seed=seed)
    return Correlation(float(res.statistic), float(res.pvalue), ci, n_boot)


def precision_at_k(
    score: ArrayLike,
    quality: ArrayLike,
    k: int,
    *,
    score_direction: str,
    metric_direction: str,
) -> float:
    """Fraction of the k samples the score ranks riskiest that are among the k best
    reconstructed.

    Ties are broken by sample order (a stable sort), so the result is deterministic.

    Args:
        score: ``[n]`` score values.
        quality: ``[n]`` quality values.
        k: 1 ≤ k ≤ n.
        score_direction: ``"higher_is_riskier"`` or ``"lower_is_riskier"``.
        metric_direction: ``"higher_is_better"`` or ``"lower_is_better"``.

    Returns:
        |top-k riskiest ∩ top-k best| / k, in [0, 1]; chance level is k/n.
    """
    s, q = _as_array(score), _as_array(quality)
    if not 1 <= k <= s.size:
        raise ValueError(f"k must be in [1, {s.size}], got {k}")
    risk, good = orient(s, score_direction), orient(q, metric_direction)
    riskiest = set(np.argsort(-risk, kind="stable")[:k].tolist())
    best = set(np.argsort(-good, kind="stable")[:k].tolist())
    return len(riskiest & best) / k


def expected_sign(score_direction: str, metric_direction: str) -> int:
    """Sign of corr(score, metric) if riskier samples (assumed direction) reconstruct better."""
    return sign(score_direction) * sign(metric_direction)


def direction_verdict(rho: Correlation, sign: int) -> Verdict:
    """``held`` / ``reversed`` when the 95% CI excludes 0 on the expected / other side."""
    if rho.value is None:
        return "undefined"
    if rho.ci95 is None:
        return "inconclusive"
    lo, hi = (sign * rho.ci95[0], sign * rho.ci95[1])
    lo, hi = min(lo, hi), max(lo, hi)
    if lo > 0:
        return "held"
    if hi < 0:
        return "reversed"
    return "inconclusive"


@dataclass(frozen=True)
class Agreement:
    """How one score agrees with one quality metric of one attack.

    Attributes:
        score: SPEC score name.
        attack: attack name.
        metric: quality metric name.
        n: validated samples.
        spearman: Spearman ρ(score, metric).
        kendall: Kendall τ-b(score, metric).
        k: the k of precision@k.
        precision_at_k: see :func:`precision_at_k`; ``None`` when the score is undefined.
        expected_sign: the sign ρ has if the assumed direction holds.
        direction: verdict on the assumed direction from ρ's interval.
    """

    score: str
    attack: str
    metric: str
    n: int
    spearman: Correlation
    kendall: Correlation
    k: int
    precision_at_k: float | None
    expected_sign: int
    direction: Verdict

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "attack": self.attack,
            "metric": self.metric,
            "n": self.n,
            "spearman": self.spearman.to_dict(),
            "kendall": self.kendall.to_dict(),
            "precision_at_k": {
                "k": self.k,
                "value": self.precision_at_k,
                "chance": self.k / self.n if self.n else None,
            },
            "expected_sign": self.expected_sign,
            "direction": self.direction,
        }


def agreement(
    score: ArrayLike,
    quality: ArrayLike,
    *,
    score_name: str,
    attack: str,
    metric: str,
    score_direction: str,
    metric_direction: str,
    k: int | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> Agreement:
    """Every agreement statistic of one score against one quality metric.

    Args:
        score: ``[n]`` score of each validated sample.
        quality: ``[n]`` quality of its reconstruction.
        score_name: SPEC name, for the record.
        attack: attack name, for the record.
        metric: metric name, for the record.
        score_direction: the score's SPEC risk direction.
        metric_direction: the metric's direction.
        k: for precision@k; default ``max(1, n // 4)``.
        n_resamples: bootstrap resamples.
        seed: bootstrap seed.

    Returns:
        The :class:`Agreement`.
    """
    s, q = _as_array(score), _as_array(quality)
    n = int(s.size)
    k = max(1, n // 4) if k is None else k
    rho = correlation(s, q, "spearman", n_resamples=n_resamples, seed=seed)
    tau = correlation(s, q, "kendall", n_resamples=n_resamples, seed=seed)
    sign = expected_sign(score_direction, metric_direction)
    p_at_k = None
    if rho.undefined is None:
        p_at_k = precision_at_k(
            s, q, k, score_direction=score_direction, metric_direction=metric_direction
        )
    return Agreement(
        score=score_name,
        attack=attack,
        metric=metric,
        n=n,
        spearman=rho,
        kendall=tau,
        k=k,
        precision_at_k=p_at_k,
        expected_sign=sign,
        direction=direction_verdict(rho, sign),
    )
