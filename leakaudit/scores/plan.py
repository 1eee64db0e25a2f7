"""What work the selected scores need (only that work is done)."""

from __future__ import annotations

from dataclasses import dataclass

from leakaudit.scores import names as N
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
        s = set(options.scores)
        gm_min = N.LAVP_GM in s and options.gm_end == "min"
        i2f_any = bool(s & {N.I2F, N.I2F_LB})
        return cls(
            l2=bool(s & {N.LAVP_L2_MAX, N.LAVP_L2_MIN, N.LAVP_GM}) or i2f_any,
            l2_min=N.LAVP_L2_MIN in s or gm_min,
            cos=bool(s & {N.LAVP_COS_MAX, N.LAVP_COS_MIN, N.LAVP_GM}),
            cos_min=N.LAVP_COS_MIN in s or gm_min,
            slq=N.I2F in s,
            trace=N.I2F_LB in s,
        )

    @property
    def lanczos(self) -> bool:
        """Whether any Lanczos run is needed."""
        return self.l2 or self.cos
