"""Candidate rankings: one score with a direction, or the rank average of two.

A candidate turns raw scores into a *feature* that increases with the predicted
reconstruction quality (higher = riskier). Features are computed relative to a
reference set (the samples a model was fitted on), so a candidate fitted on a
calibration set can be applied to any later scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Scores = dict[str, np.ndarray]


@dataclass(frozen=True)
class Candidate:
    """A ranking rule.

    Attributes:
        scores: one score name, or two for a rank average.
        signs: per score, +1 if a larger value predicts a better reconstruction (larger
            is riskier), −1 if a smaller one does.
    """

    scores: tuple[str, ...]
    signs: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.scores) not in (1, 2) or len(self.signs) != len(self.scores):
            raise ValueError("a candidate has one score, or two with a sign each")
        if any(s not in (1, -1) for s in self.signs):
            raise ValueError("signs are +1 or -1")

    @property
    def name(self) -> str:
        """``grad_norm↑`` (larger is riskier), ``lavp_cos_max↓``, ``rank_avg(a↑, b↓)``."""
        parts = [f"{s}{'↑' if g > 0 else '↓'}" for s, g in zip(self.scores, self.signs)]
        return parts[0] if len(parts) == 1 else f"rank_avg({', '.join(parts)})"

    @property
    def direction(self) -> str:
        """The report's direction word for a single-score candidate."""
        return "higher_is_riskier" if self.signs[0] > 0 else "lower_is_riskier"

    def feature(self, scores: Scores, reference: Scores | None = None) -> np.ndarray:
        """``[N]`` feature of the samples in ``scores``; larger predicts a better attack.

        A single score gives ``sign · value``. A rank average gives the mean, over its two
        scores, of each sample's mid-percentile in ``reference`` (default: the samples
        themselves), so that it means the same on new data.
        """
        if len(self.scores) == 1:
            return self.signs[0] * np.asarray(scores[self.scores[0]], dtype=np.float64)
        ref = reference if reference is not None else scores
        parts = [
            percentile_in(g * np.asarray(scores[s], float), g * np.asarray(ref[s], float))
            for s, g in zip(self.scores, self.signs)
        ]
        missing = np.any([~np.isfinite(np.asarray(scores[s], float)) for s in self.scores], 0)
        return np.where(missing, np.nan, np.mean(parts, axis=0))  # NaN as for one score

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {"name": self.name, "scores": list(self.scores), "signs": list(self.signs)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Candidate:
        """Inverse of :meth:`to_dict`."""
        scores = data["scores"]
        signs = data["signs"]
        if not isinstance(scores, list) or not isinstance(signs, list):
            raise ValueError("a candidate needs lists 'scores' and 'signs'")
        return cls(tuple(str(s) for s in scores), tuple(int(g) for g in signs))


def singles(names: list[str]) -> list[Candidate]:
    """Every score in both directions."""
    return [Candidate((n,), (g,)) for n in names for g in (1, -1)]


def percentile_in(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mid-percentile of each value within ``reference`` (ties count half), in [0, 1].

    NaN values (and NaN references) are treated as the least risky.
    """
    ref = np.sort(np.where(np.isfinite(reference), reference, -np.inf))
    v = np.where(np.isfinite(values), values, -np.inf)
    below = np.searchsorted(ref, v, side="left")
    upto = np.searchsorted(ref, v, side="right")
    return (below + upto) / (2.0 * max(len(ref), 1))
