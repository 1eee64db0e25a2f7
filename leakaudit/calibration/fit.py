"""From measured attack quality to a :class:`~leakaudit.calibration.document.Calibration`."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from leakaudit.calibration.confounds import confound_table
from leakaudit.calibration.crossval import cross_validate
from leakaudit.calibration.document import Calibration
from leakaudit.calibration.recovery import Recovery

#: Fewest recovered samples for a calibration to mean anything.
MIN_RECOVERED = 3


def fit_calibration(
    scores: dict[str, np.ndarray],
    quality: Recovery,
    *,
    meta: dict[str, dict[str, Any]],
    k: int = 4,
    seed: int = 0,
    min_recovered: int = MIN_RECOVERED,
) -> Calibration:
    """Cross-validate the ranking rule and the PSNR map on the attacked samples.

    Args:
        scores: score name → ``[N]`` values of the attacked samples.
        quality: what the attacks recovered on those samples.
        meta: ``model``, ``data``, ``attack`` and ``defense`` sections of the document.
        k: cross-validation folds.
        seed: folds and bootstrap.
        min_recovered: below this many recovered samples the attacks are judged to have
            failed and nothing is calibrated (the document says so).
    """
    recovery_info = _recovery_info(quality)
    cal = Calibration(
        status="attacks_failed",
        model=meta["model"],
        data=meta["data"],
        attack=meta["attack"],
        defense=meta["defense"],
        recovery=recovery_info,
        confounds=confound_table(scores, quality.psnr_db, quality.mean, quality.contrast),
    )
    if recovery_info["recovered"] < min_recovered:
        recovery_info["reason"] = _failure_reason(quality)
        return cal
    cv = cross_validate(scores, fit_target(quality), k=k, seed=seed)
    return dataclasses.replace(
        cal,
        status="calibrated",
        candidates=[c.to_dict() for c in cv.candidates],
        chosen=cv.chosen,
        procedure={
            "cv_spearman": cv.procedure_rho if np.isfinite(cv.procedure_rho) else None,
            "ci95": list(cv.procedure_ci95) if cv.procedure_ci95 else None,
            "k": cv.k,
            "folds_chosen": [c.name for c in cv.folds_chosen],
        },
        map=cv.map,
        reference={s: cv.reference[s].tolist() for s in cv.chosen.scores},
    )


def _recovery_info(quality: Recovery) -> dict[str, Any]:
    """The document's ``recovery`` section: thresholds, counts, every sample's PSNR."""
    return {
        "attacked": len(quality.psnr_db),
        "recovered": int(quality.recovered.sum()),
        "fraction": quality.fraction,
        "min_psnr_db": quality.min_psnr_db,
        "min_gain_db": quality.min_gain_db,
        "median_psnr_db": float(np.median(quality.psnr_db)),
        "max_psnr_db": float(np.max(quality.psnr_db)),
        "psnr_db": quality.psnr_db.tolist(),
    }


def _failure_reason(quality: Recovery) -> str:
    """Why there is nothing to calibrate, in words."""
    return (
        f"only {int(quality.recovered.sum())} of {len(quality.psnr_db)} samples were "
        f"recovered (PSNR ≥ {quality.min_psnr_db:g} dB and ≥ {quality.min_gain_db:g} dB "
        "better than the best constant image): the attacks failed, so there is no ranking "
        "to calibrate. Raise the attack budget, or treat these samples as not exposed to "
        "these attacks."
    )


def fit_target(quality: Recovery) -> np.ndarray:
    """What the calibration learns to predict: each sample's PSNR where the attack
    recovered it; one shared floor (the median PSNR of the failed attacks) elsewhere.

    A failed attack's PSNR still varies with the image's own brightness and contrast; tied
    at one value, the failures carry no ranking information for a score to "predict".
    """
    psnr = np.asarray(quality.psnr_db, dtype=np.float64)
    failed = ~quality.recovered
    if not failed.any():
        return psnr
    return np.where(failed, float(np.median(psnr[failed])), psnr)
