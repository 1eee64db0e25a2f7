"""Is a score predicting the attack, or just the image's brightness and contrast?

Reports each score's Spearman ρ with the originals' mean intensity and contrast, and its
*partial* Spearman ρ with reconstruction quality controlling for both: ranks of the score
and of the quality are each regressed on the ranks of mean and contrast (least squares
with an intercept) and the residuals are correlated.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from leakaudit.calibration.crossval import spearman


def partial_spearman(a: np.ndarray, b: np.ndarray, controls: list[np.ndarray]) -> float:
    """Spearman ρ of ``a`` and ``b`` with the ranks of ``controls`` regressed out."""
    cols = [a, b, *controls]
    ok = np.all([np.isfinite(c) for c in cols], axis=0)
    if ok.sum() < len(controls) + 4:
        return float("nan")
    ranks = [stats.rankdata(c[ok]) for c in cols]
    design = np.column_stack([np.ones(int(ok.sum())), *ranks[2:]])
    res = []
    for r in ranks[:2]:
        coef, *_ = np.linalg.lstsq(design, r, rcond=None)
        res.append(r - design @ coef)
    if np.ptp(res[0]) < 1e-9 or np.ptp(res[1]) < 1e-9:
        return float("nan")
    return float(np.corrcoef(res[0], res[1])[0, 1])


def confound_table(
    scores: dict[str, np.ndarray], quality: np.ndarray, mean: np.ndarray, contrast: np.ndarray
) -> dict[str, dict[str, float | None]]:
    """Per score: ρ with quality, with mean, with contrast, and the partial ρ."""

    def num(x: float) -> float | None:
        return float(x) if np.isfinite(x) else None

    out = {}
    for name, v in scores.items():
        v = np.asarray(v, dtype=np.float64)
        out[name] = {
            "spearman_quality": num(spearman(v, quality)),
            "spearman_mean": num(spearman(v, mean)),
            "spearman_contrast": num(spearman(v, contrast)),
            "partial_spearman_quality": num(partial_spearman(v, quality, [mean, contrast])),
        }
    return out
