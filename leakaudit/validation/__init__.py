"""``validate``: run real gradient inversion attacks on a subset of samples and measure
how well each score predicts how well they are reconstructed.

- :mod:`~leakaudit.validation.selection`: which samples are attacked (stratified by risk).
- :mod:`~leakaudit.validation.run`: :func:`validate`, the attack-and-measure run.
- :mod:`~leakaudit.validation.result`: :class:`ValidationResult`, its JSON form and the
  summary sentence per attack.
- :mod:`~leakaudit.validation.sources`: scores from a scan report
  (:func:`validate_report`) or a scan configuration (:func:`validate_config`).
"""

from leakaudit.validation.result import PRIMARY_METRIC, ValidationResult, summarise
from leakaudit.validation.run import ProgressFn, validate
from leakaudit.validation.selection import select, stratified_indices
from leakaudit.validation.sources import scores_from_report, validate_config, validate_report

__all__ = [
    "PRIMARY_METRIC",
    "ProgressFn",
    "ValidationResult",
    "scores_from_report",
    "select",
    "stratified_indices",
    "summarise",
    "validate",
    "validate_config",
    "validate_report",
]
