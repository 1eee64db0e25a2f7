"""Ranks, risk percentiles and score distributions: pure functions over ``[N]`` arrays."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from leakaudit.direction import Direction, orient

#: Quantiles reported for every score's distribution.
QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.75, 0.95)


def risk_ranks(values: np.ndarray, direction: Direction) -> np.ndarray:
    """``[N]`` int ranks, 1 = riskiest; ties keep dataset order; non-finite values last."""
    r = orient(values, direction)
    key = np.where(np.isfinite(r), -r, np.inf)  # ascending key: riskiest first
    order = np.argsort(key, kind="stable")
    ranks = np.empty(len(r), dtype=np.int64)
    ranks[order] = np.arange(1, len(r) + 1)
    return ranks


def risk_percentiles(values: np.ndarray, direction: Direction) -> np.ndarray:
    """``[N]`` percentiles in [0, 100], 100 = riskiest; ties share their mean; NaN when the
    value is not finite.

    The percentile of a sample is ``100 · (rank_from_safest − 1) / (n − 1)`` over the
    ``n`` finite values, with average ranks for ties (100 when ``n == 1``).
    """
    r = orient(values, direction)
    finite = np.isfinite(r)
    out = np.full(len(r), np.nan)
    n = int(finite.sum())
    if n == 1:
        out[finite] = 100.0
    elif n > 1:
        out[finite] = 100.0 * (rankdata(r[finite], method="average") - 1.0) / (n - 1)
    return out


def distribution(values: np.ndarray) -> dict[str, float | int | None]:
    """Summary of ``[N]`` values: count, non-finite count, min, quantiles, median, max, mean."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    stats: dict[str, float | int | None] = {
        "count": int(values.size),
        "non_finite": int(values.size - finite.size),
    }
    keys = ["min", *(f"q{round(q * 100):02d}" for q in QUANTILES), "max", "mean"]
    if finite.size == 0:
        stats.update(dict.fromkeys(keys))
        stats["median"] = None
        return stats
    qs = np.quantile(finite, QUANTILES)
    stats["min"] = float(finite.min())
    for q, v in zip(QUANTILES, qs, strict=True):
        stats[f"q{round(q * 100):02d}"] = float(v)
    stats["median"] = float(np.median(finite))
    stats["max"] = float(finite.max())
    stats["mean"] = float(finite.mean())
    return stats
