"""A monotone map feature → PSNR (isotonic regression) with a prediction interval.

The fit is scipy's pool-adjacent-violators (``scipy.optimize.isotonic_regression``) on the
feature's distinct values; between them the map interpolates linearly and beyond them it
is constant. The interval comes from residuals measured on *held-out* samples (see
:func:`leakaudit.calibration.crossval.cross_validate`), never from the fit's own residuals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import isotonic_regression


@dataclass(frozen=True)
class MonotoneMap:
    """A non-decreasing map with a residual interval.

    Attributes:
        knots: ``[K]`` increasing feature values.
        values: ``[K]`` fitted PSNR at the knots (non-decreasing).
        residual_low: lower end from held-out residuals (measured − predicted), dB
            (see :meth:`with_interval`).
        residual_high: upper end, dB.
        coverage: the nominal coverage of [low, high] (e.g. 0.8).
    """

    knots: np.ndarray
    values: np.ndarray
    residual_low: float = 0.0
    residual_high: float = 0.0
    coverage: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(cls, feature: np.ndarray, target: np.ndarray) -> MonotoneMap:
        """Least-squares non-decreasing fit of ``target`` on ``feature`` (finite pairs)."""
        x = np.asarray(feature, dtype=np.float64)
        y = np.asarray(target, dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() < 2:
            raise ValueError("a monotone map needs at least two finite points")
        knots, inverse = np.unique(x[ok], return_inverse=True)
        weights = np.bincount(inverse).astype(np.float64)
        means = np.bincount(inverse, weights=y[ok]) / weights
        fitted = isotonic_regression(means, weights=weights, increasing=True).x
        return cls(knots, np.asarray(fitted, dtype=np.float64))

    def with_interval(self, residuals: np.ndarray, coverage: float = 0.8) -> MonotoneMap:
        """The same map with a ``coverage`` interval from held-out ``residuals``.

        Split-conformal order statistics (Vovk, Gammerman and Shafer 2005; Lei et al. 2018,
        "Distribution-free predictive inference for regression"): with n residuals and
        α = 1 − coverage, the ⌊(n+1)α/2⌋-th and ⌈(n+1)(1−α/2)⌉-th smallest (clamped to
        the smallest and largest). A new residual exchangeable with these falls inside
        with probability ≥ ``coverage`` (at n = 16 and 80%: the whole range, 15/17 ≈
        0.88), except below n = 9 where the whole range gives (n − 1)/(n + 1).
        Residuals of cross-validation folds around a map refitted on all the data make
        this approximate (docs/calibration.md). Interpolated quantiles fall short at
        small n (0.71 at n = 16).
        """
        r = np.sort(np.asarray(residuals, dtype=np.float64))
        r = r[np.isfinite(r)]
        if r.size == 0:
            raise ValueError("no finite held-out residuals")
        tail = (1.0 - coverage) / 2.0
        n = r.size
        low = min(max(math.floor((n + 1) * tail + 1e-9), 1), n)
        high = max(min(math.ceil((n + 1) * (1.0 - tail) - 1e-9), n), 1)
        return MonotoneMap(self.knots, self.values, float(r[low - 1]), float(r[high - 1]), coverage)

    def __call__(self, feature: np.ndarray) -> np.ndarray:
        """Predicted PSNR ``[N]``; NaN features give NaN."""
        x = np.asarray(feature, dtype=np.float64)
        out = np.interp(x, self.knots, self.values)
        return np.where(np.isfinite(x), out, np.nan)

    def interval(self, feature: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` prediction interval ``[N]`` each."""
        mid = self(feature)
        return mid + self.residual_low, mid + self.residual_high

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "knots": self.knots.tolist(),
            "values": self.values.tolist(),
            "residual_low_db": self.residual_low,
            "residual_high_db": self.residual_high,
            "coverage": self.coverage,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> MonotoneMap:
        """Inverse of :meth:`to_dict`; checks the knots increase and values do not fall."""
        knots = np.asarray(data["knots"], dtype=np.float64)
        values = np.asarray(data["values"], dtype=np.float64)
        if knots.ndim != 1 or knots.shape != values.shape or knots.size < 1:
            raise ValueError("knots and values must be equal-length lists")
        if not (np.all(np.isfinite(knots)) and np.all(np.isfinite(values))):
            raise ValueError("knots and values must be finite")
        if np.any(np.diff(knots) <= 0) or np.any(np.diff(values) < 0):
            raise ValueError("knots must increase and values must not decrease")
        low, high = float(data["residual_low_db"]), float(data["residual_high_db"])  # type: ignore[arg-type]
        return cls(knots, values, low, high, float(data["coverage"]))  # type: ignore[arg-type]
