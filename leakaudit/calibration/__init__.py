"""Calibration: learn, on the user's own model, which score predicts what an attack recovers.

Pure statistics over per-sample scores and measured reconstruction quality; the attacks
that measure the quality live in :mod:`leakaudit.attacks` and :mod:`leakaudit.validation`.
"""

from leakaudit.calibration.candidates import Candidate
from leakaudit.calibration.crossval import CalibrationError, CrossValidation, cross_validate
from leakaudit.calibration.monotone import MonotoneMap
from leakaudit.calibration.recovery import Recovery, recovery

__all__ = [
    "CalibrationError",
    "Candidate",
    "CrossValidation",
    "MonotoneMap",
    "Recovery",
    "cross_validate",
    "recovery",
]
