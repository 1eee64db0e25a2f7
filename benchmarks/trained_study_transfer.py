"""`leakaudit calibrate` as shipped, tested on samples it never saw.

From one setting's saved per-sample results: draw the default 32-sample calibration
subset (stratified over the gradient norm, as ``leakaudit calibrate`` does), fit the
calibration on it with the product's code (:func:`leakaudit.calibration.fit.fit_calibration`),
predict the other samples' PSNR, and compare that ranking's Spearman ρ with measured
best-attack PSNR against every fixed score's ρ (in its shipped direction) on the same
held-out samples. Repeated over several subset seeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from leakaudit.calibration.crossval import spearman
from leakaudit.calibration.fit import fit_calibration
from leakaudit.calibration.recovery import MIN_GAIN_DB, MIN_PSNR_DB, Recovery
from leakaudit.calibration.stratify import stratified_subset
from leakaudit.direction import sign
from leakaudit.scores.names import ALL_SCORES, GRAD_NORM, SCORES

#: ``leakaudit calibrate``'s default subset size.
SUBSET = 32
#: Fewest samples left over to measure the calibrated ranking on.
MIN_HELD_OUT = 20


def saved_recovery(samples: dict[str, Any], idx: np.ndarray) -> Recovery:
    """The best-attack :class:`Recovery` of samples ``idx``, rebuilt from the saved
    PSNR and contrast (gain over the best constant image = PSNR + 20·log10(contrast))."""
    psnr = np.asarray(samples["psnr"]["best"], dtype=np.float64)[idx]
    contrast = np.asarray(samples["contrast"], dtype=np.float64)[idx]
    gain = psnr + 20.0 * np.log10(np.maximum(contrast, 1e-6))
    ok = (gain >= MIN_GAIN_DB) & (psnr >= MIN_PSNR_DB)
    mean = np.asarray(samples["mean"], dtype=np.float64)[idx]
    return Recovery(psnr, gain, ok, mean, contrast, MIN_PSNR_DB, MIN_GAIN_DB)


def one_split(samples: dict[str, Any], seed: int) -> dict[str, Any] | None:
    """Calibrate on a 32-sample stratified subset, rank the rest; None if uncalibrated."""
    scores = {k: np.asarray(v, dtype=np.float64) for k, v in samples["scores"].items()}
    n = len(scores[GRAD_NORM])
    sub = stratified_subset({GRAD_NORM: scores[GRAD_NORM]}, SUBSET, seed)
    rest = np.setdiff1d(np.arange(n), sub)
    meta: dict[str, dict[str, Any]] = {"model": {}, "data": {}, "attack": {}, "defense": {}}
    cal = fit_calibration(
        {k: v[sub] for k, v in scores.items()}, saved_recovery(samples, sub), meta=meta, seed=seed
    )
    if not cal.usable:
        return None
    psnr = np.asarray(samples["psnr"]["best"], dtype=np.float64)[rest]
    feature = cal.feature({k: v[rest] for k, v in scores.items()})
    fixed = {k: spearman(sign(SCORES[k].direction) * scores[k][rest], psnr) for k in ALL_SCORES}
    chosen = cal.chosen.name if cal.chosen else None
    return {"chosen": chosen, "rho": spearman(feature, psnr), "fixed": fixed}


def transfer(result: dict[str, Any], seeds: tuple[int, ...] = (0, 1, 2, 3, 4)) -> dict[str, Any]:
    """:func:`one_split` over ``seeds``: each split's ρ, and means over the calibrated ones."""
    if len(result["samples"]["psnr"]["best"]) < SUBSET + MIN_HELD_OUT:
        return {"calibrated_splits": 0, "splits": 0, "note": "too few samples to hold out"}
    splits = [s for s in (one_split(result["samples"], seed) for seed in seeds) if s]
    if not splits:
        return {"calibrated_splits": 0, "splits": len(seeds)}
    mean_fixed = {k: float(np.nanmean([s["fixed"][k] for s in splits])) for k in ALL_SCORES}
    return {
        "calibrated_splits": len(splits),
        "splits": len(seeds),
        "heldout_n": len(result["samples"]["psnr"]["best"]) - SUBSET,
        "calibrated_rho_mean": float(np.nanmean([s["rho"] for s in splits])),
        "calibrated_rho_each": [s["rho"] for s in splits],
        "chosen_each": [s["chosen"] for s in splits],
        "fixed_rho_mean": mean_fixed,
    }
