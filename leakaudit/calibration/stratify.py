"""Choose the calibration subset: spread over the quantiles of the cheap scores.

Attacks are the expensive part of calibration, so they run on a small subset. To learn a
map that holds over the whole range of risk, the subset is stratified: the samples are
ordered by the mean of their percentile ranks in the given cheap scores, cut into ``n``
strata of equal size, and one sample is drawn (seeded) from each.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def stratified_subset(scores: dict[str, np.ndarray], n: int, seed: int = 0) -> np.ndarray:
    """``n`` sample positions (sorted), one per stratum of the mean percentile rank.

    Args:
        scores: score name → ``[N]`` values (non-finite values rank lowest).
        n: subset size; all ``N`` positions when ``n >= N``.
        seed: draws within strata.
    """
    if not scores:
        raise ValueError("stratifying needs at least one score")
    N = len(next(iter(scores.values())))
    if n >= N:
        return np.arange(N)
    if n < 1:
        raise ValueError(f"subset size must be ≥ 1, got {n}")
    ranks = [
        stats.rankdata(np.where(np.isfinite(v), v, -np.inf)) / N
        for v in (np.asarray(s, dtype=np.float64) for s in scores.values())
    ]
    order = np.argsort(np.mean(ranks, axis=0), kind="stable")
    rng = np.random.default_rng(seed)
    picks = [int(rng.choice(stratum)) for stratum in np.array_split(order, n)]
    return np.sort(np.asarray(picks, dtype=np.int64))
