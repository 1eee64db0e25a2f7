"""What an attack recovered, judged against a trivial guess.

An attack that fails still returns an image, and its MSE then varies with the original's
own brightness and contrast: a score that scales with intensity would seem to "predict"
it. So reconstruction is judged against the best constant image (the original's mean),
whose MSE is the original's variance:

    gain_dB = PSNR(x̂, x) − PSNR(mean(x), x) = 10·log10(Var(x) / MSE(x̂, x)).

A sample counts as *recovered* when the attack both beats that guess clearly (gain ≥
``min_gain_db``) and reaches a PSNR at which content is recognisable (≥ ``min_psnr_db``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Default success threshold: PSNR at which a reconstruction shows the content.
MIN_PSNR_DB = 15.0
#: Default success threshold: gain over the best constant image (MSE ≤ Var(x)/4).
MIN_GAIN_DB = 6.0
#: Floor for MSE and variance, so a perfect or flat image stays finite.
_FLOOR = 1e-12


@dataclass(frozen=True)
class Recovery:
    """Per-sample reconstruction quality, all ``[N]`` float64.

    Attributes:
        psnr_db: PSNR of the reconstruction (images in [0, 1]).
        gain_db: PSNR gain over the best constant image.
        recovered: gain ≥ ``min_gain_db`` and PSNR ≥ ``min_psnr_db``.
        mean: each original's mean intensity (a confound).
        contrast: each original's standard deviation (a confound).
        min_psnr_db: the PSNR threshold used.
        min_gain_db: the gain threshold used.
    """

    psnr_db: np.ndarray
    gain_db: np.ndarray
    recovered: np.ndarray
    mean: np.ndarray
    contrast: np.ndarray
    min_psnr_db: float
    min_gain_db: float

    @property
    def fraction(self) -> float:
        """Fraction of samples recovered."""
        return float(self.recovered.mean()) if self.recovered.size else 0.0


def recovery(
    reconstructions: np.ndarray,
    originals: np.ndarray,
    *,
    min_psnr_db: float = MIN_PSNR_DB,
    min_gain_db: float = MIN_GAIN_DB,
) -> Recovery:
    """Judge reconstructions ``[N, ...]`` against originals ``[N, ...]``, both in [0, 1]."""
    x = np.asarray(originals, dtype=np.float64).reshape(len(originals), -1)
    xr = np.asarray(reconstructions, dtype=np.float64).reshape(len(reconstructions), -1)
    if x.shape != xr.shape:
        raise ValueError(f"shapes differ: {xr.shape} reconstructions, {x.shape} originals")
    mse = np.maximum(((xr - x) ** 2).mean(axis=1), _FLOOR)
    var = np.maximum(x.var(axis=1), _FLOOR)
    psnr = 10.0 * np.log10(1.0 / mse)
    gain = 10.0 * np.log10(var / mse)
    ok = (gain >= min_gain_db) & (psnr >= min_psnr_db)
    return Recovery(psnr, gain, ok, x.mean(axis=1), x.std(axis=1), min_psnr_db, min_gain_db)


def best_over_attacks(
    reconstructions: dict[str, np.ndarray],
    originals: np.ndarray,
    *,
    min_psnr_db: float = MIN_PSNR_DB,
    min_gain_db: float = MIN_GAIN_DB,
) -> Recovery:
    """:func:`recovery` of the best reconstruction per sample over several attacks.

    Choosing by PSNR uses the original, which a real attacker does not have: this is the
    best the attacks can do, an upper bound on what one attacker would pick."""
    if not reconstructions:
        raise ValueError("no reconstructions")
    per = [
        recovery(r, originals, min_psnr_db=min_psnr_db, min_gain_db=min_gain_db)
        for r in reconstructions.values()
    ]
    stacked = np.stack([q.psnr_db for q in per])
    best = np.argmax(np.where(np.isfinite(stacked), stacked, -np.inf), axis=0)
    rows = np.arange(len(best))

    def pick(field: str) -> np.ndarray:
        return np.stack([getattr(q, field) for q in per])[best, rows]

    return Recovery(
        pick("psnr_db"),
        pick("gain_db"),
        pick("recovered"),
        per[0].mean,
        per[0].contrast,
        min_psnr_db,
        min_gain_db,
    )
