"""What work the selected scores need (only that work is done)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from leakaudit.scores.names import SCORES
from leakaudit.scores.options import ScoreOptions


@dataclass(frozen=True)
class Plan:
    """Which operators, spectrum ends and estimators a score selection needs."""

    l2: bool
    l2_min: bool
    cos: bool
    cos_min: bool
    slq: bool
    trace: bool

    @classmethod
    def of(cls, options: ScoreOptions) -> Plan:
        """The work the selected scores need: the union of their specs' needs."""
        needs: set[str] = set()
        for name in options.scores:
            needs |= SCORES[name].plan_needs(options.gm_end)
        return cls(**{f.name: f.name in needs for f in fields(cls)})

    @property
    def lanczos(self) -> bool:
        """Whether any Lanczos run is needed."""
        return self.l2 or self.cos
