"""Apply a calibration to a scan: per-sample predicted PSNR, and the ranking it implies.

The ranking follows the calibrated rule's feature (strictly ordered, where the monotone
map is flat over a range), so it agrees with the predicted PSNR and breaks its ties by
the rule. A gate rule on ``psnr`` reads the predicted PSNR in dB: higher is riskier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from leakaudit.calibration.document import Calibration

#: The name gate rules use for the predicted PSNR (``--fail-on 'psnr>20'``).
PSNR_RULE = "psnr"


@dataclass(frozen=True)
class Prediction:
    """A calibration applied to ``N`` samples.

    Attributes:
        psnr_db: ``[N]`` predicted PSNR of the attack on each sample.
        low: ``[N]`` lower end of the prediction interval.
        high: ``[N]`` upper end.
        feature: ``[N]`` the rule's feature (larger = riskier), the ranking key.
        summary: what the report says about the calibration.
    """

    psnr_db: np.ndarray
    low: np.ndarray
    high: np.ndarray
    feature: np.ndarray
    summary: dict[str, Any]


def predict(cal: Calibration, scores: dict[str, np.ndarray]) -> Prediction:
    """Predict every sample's PSNR under the calibrated attack.

    Raises:
        CalibrationFileError: the calibration cannot predict, or a score it needs is missing.
    """
    feature = cal.feature(scores)  # raises when the calibration cannot predict
    assert cal.chosen is not None and cal.map is not None
    low, high = cal.map.interval(feature)
    summary = {
        "rule": cal.chosen.name,
        "scores": list(cal.chosen.scores),
        "signs": list(cal.chosen.signs),
        "cv_spearman": cal.procedure.get("cv_spearman"),
        "ci95": cal.procedure.get("ci95"),
        "interval_coverage": cal.map.coverage,
        "attack": cal.attack,
        "defense": cal.defense,
        "created": cal.created,
        "recovered_fraction": cal.recovery.get("fraction"),
        "checkpoint_sha256": cal.model.get("checkpoint_sha256"),
    }
    return Prediction(cal.map(feature), low, high, feature, summary)
