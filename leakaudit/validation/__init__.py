"""``validate``: run real gradient inversion attacks on a subset of samples and measure
how well each score predicts how well they are reconstructed.

- :mod:`~leakaudit.validation.selection`: which samples are attacked (stratified by risk);
  :mod:`~leakaudit.validation.batched`: which client batches, when the server sees
  batch gradients (``validate --batch-size``).
- :mod:`~leakaudit.validation.pairing`: which reconstruction of a batch is which sample
  (the assignment that maximises total PSNR).
- :mod:`~leakaudit.validation.run`: :func:`validate`, the attack-and-measure run.
- :mod:`~leakaudit.validation.result`: :class:`ValidationResult`, its JSON form and the
  summary sentence per attack.
- :mod:`~leakaudit.validation.sources`: the scores to validate, a :class:`ScoreTable` read
  from a scan report or made from the engine's result (:func:`validate_scores`,
  :func:`validate_report`).

:func:`leakaudit.api.validate` (the peer of :func:`leakaudit.api.scan`) loads a scan
configuration's model and data and calls into this package; this package never imports
the API.
"""

from leakaudit.validation.result import PRIMARY_METRIC, ValidationResult, summarise
from leakaudit.validation.run import ProgressFn, validate
from leakaudit.validation.selection import select, stratified_indices
from leakaudit.validation.sources import (
    ScoreTable,
    scores_from_report,
    scores_from_result,
    validate_report,
    validate_scores,
)

__all__ = [
    "PRIMARY_METRIC",
    "ProgressFn",
    "ScoreTable",
    "ValidationResult",
    "scores_from_report",
    "scores_from_result",
    "select",
    "stratified_indices",
    "summarise",
    "validate",
    "validate_report",
    "validate_scores",
]
