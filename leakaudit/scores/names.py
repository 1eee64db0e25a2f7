"""Score names, and the one registry of what each score is, which way is risky and what
work it needs (see docs/scores.md).

Every module that reports a score uses these names; nothing else spells them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from leakaudit.direction import Direction
from leakaudit.registry import Registry

#: Work a score needs from the scan (see :class:`leakaudit.scores.plan.Plan`): the L2 or
#: cosine matching Hessian's Lanczos run (``l2``, ``cos``), its smallest end too
#: (``l2_min``, ``cos_min``), the SLQ estimate of I²F (``slq``), the trace of JᵀJ
#: (``trace``).
Need = Literal["l2", "l2_min", "cos", "cos_min", "slq", "trace"]


@dataclass(frozen=True)
class ScoreSpec:
    """What a score is, which way is risky, and what it needs from the plan.

    Attributes:
        name: the JSON name (one of the constants below).
        summary: the formula in one line.
        direction: the shipped risk direction (overridable per score in the config).
        needs: the work it needs, whatever the options.
        follows_gm_end: its spectrum end is the config's ``gm_end`` (``lavp_gm``): with
            ``gm_end: min`` it also needs both ``*_min`` ends.
    """

    name: str
    summary: str
    direction: Direction
    needs: frozenset[Need] = frozenset()
    follows_gm_end: bool = False

    def plan_needs(self, gm_end: str = "max") -> frozenset[Need]:
        """The work this score needs under ``gm_end``."""
        if self.follows_gm_end and gm_end == "min":
            return self.needs | {"l2_min", "cos_min"}
        return self.needs


GRAD_NORM = "grad_norm"
LAVP_L2_MAX = "lavp_l2_max"
LAVP_L2_MIN = "lavp_l2_min"
LAVP_COS_MAX = "lavp_cos_max"
LAVP_COS_MIN = "lavp_cos_min"
LAVP_GM = "lavp_gm"
I2F_LB = "i2f_lb"
I2F = "i2f"

_L2 = "λ_{end} of 2JᵀJ (L2 matching Hessian)"
_COS = "λ_{end} of Jᵀ(I−uuᵀ)J/‖g*‖² (cosine matching Hessian)"

#: Every score, in report order, with its shipped direction. The reproduction study
#: (docs/reproduction.md, LeNet with DLG/iDLG and Inverting Gradients on digits and photo
#: patches, 100 samples each) supported "smaller is riskier" for the max end and lavp_gm
#: but found the min end the other way round (larger λ_min went with better
#: reconstructions in 7 of 12 LeNet cells, against in 1).
SCORES: Registry[ScoreSpec] = Registry(
    "score",
    (
        (spec.name, spec)
        for spec in (
            ScoreSpec(GRAD_NORM, "‖g(x*)‖₂", "higher_is_riskier"),
            ScoreSpec(LAVP_L2_MAX, _L2.format(end="max"), "lower_is_riskier", frozenset({"l2"})),
            ScoreSpec(
                LAVP_L2_MIN, _L2.format(end="min"), "higher_is_riskier", frozenset({"l2", "l2_min"})
            ),
            ScoreSpec(LAVP_COS_MAX, _COS.format(end="max"), "lower_is_riskier", frozenset({"cos"})),
            ScoreSpec(
                LAVP_COS_MIN,
                _COS.format(end="min"),
                "higher_is_riskier",
                frozenset({"cos", "cos_min"}),
            ),
            ScoreSpec(
                LAVP_GM,
                "√(lavp_l2 · lavp_cos), same spectrum end",
                "lower_is_riskier",
                frozenset({"l2", "cos"}),
                follows_gm_end=True,
            ),
            ScoreSpec(
                I2F_LB, "√E‖Jᵀδ‖² / λ_max(JᵀJ)", "lower_is_riskier", frozenset({"l2", "trace"})
            ),
            ScoreSpec(I2F, "√E‖(JᵀJ+εI)⁻¹Jᵀδ‖²", "lower_is_riskier", frozenset({"l2", "slq"})),
        )
    ),
)

#: Every score name, in report order.
ALL_SCORES: tuple[str, ...] = SCORES.names()


def lavp_name(operator: str, end: str) -> str:
    """The LAVP score of one matching loss (``"l2"``/``"cos"``) and spectrum end."""
    name = f"lavp_{operator}_{end}"
    if name not in SCORES:
        raise ValueError(f"no LAVP score {name!r}")
    return name


def converged_key(score: str) -> str:
    """The diagnostic that says whether ``score`` met its solver's tolerance (per sample).

    False marks a value that is not accurate to the stated tolerance: reports show it as
    approximate instead of printing digits it does not have.
    """
    return f"converged_{score}"


def residual_key(score: str) -> str:
    """The diagnostic ‖H y − θ y‖ / θ_max of LAVP score ``score``'s reported Ritz pair
    (``lavp_l2_max`` → ``residual_l2_max``), per sample.

    Raises:
        ValueError: ``score`` is not one of the four single-end LAVP scores.
    """
    if score not in SCORES or not score.startswith("lavp_") or score == LAVP_GM:
        raise ValueError(f"score {score!r} has no residual diagnostic")
    return "residual_" + score.removeprefix("lavp_")


def validate_score_names(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Return ``names`` in report order, or raise ``ValueError`` naming the unknown one."""
    return SCORES.select(names)
