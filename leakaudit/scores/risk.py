"""The risk view of a run, resolved once: which score ranks the samples, and the direction
every score is read in (the configuration's override, else the shipped one).

``scan`` resolves it from the configuration and records it in the report
(``Report.risk``); ``validate`` resolves it from its arguments or the scan report and
records it in the :class:`~leakaudit.validation.result.ValidationResult`. Rankings,
selections, agreement verdicts and the gate read it; nothing else looks up a direction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, cast, get_args

from leakaudit.direction import Direction
from leakaudit.scores.names import ALL_SCORES, GRAD_NORM, SCORES

#: The score that ranks samples unless told otherwise (scan and validate alike). One
#: place only: the reproduction study (docs/reproduction.md) chose it.
DEFAULT_RISK_SCORE = GRAD_NORM


def default_risk_score(available: Iterable[str] = ALL_SCORES) -> str:
    """:data:`DEFAULT_RISK_SCORE` when it is available, else the first available score
    in report order.

    Raises:
        ValueError: no score is available.
    """
    names = SCORES.select(list(available))
    return DEFAULT_RISK_SCORE if DEFAULT_RISK_SCORE in names else names[0]


@dataclass(frozen=True)
class Risk:
    """Which score ranks the samples, and which way every score is risky.

    Attributes:
        score: the risk score.
        directions: every registered score → its direction in this run.
        overridden: the scores whose direction the configuration set.
    """

    score: str
    directions: Mapping[str, Direction]
    overridden: frozenset[str] = field(default_factory=frozenset)

    @property
    def direction(self) -> Direction:
        """The risk score's direction."""
        return self.directions[self.score]

    def source(self, name: str) -> Literal["config", "default"]:
        """Where score ``name``'s direction comes from."""
        return "config" if name in self.overridden else "default"

    def only(self, names: Iterable[str]) -> dict[str, Direction]:
        """The directions of ``names``, in report order."""
        wanted = set(names)
        return {n: d for n, d in self.directions.items() if n in wanted}

    def to_dict(self) -> dict[str, str]:
        """``{"score", "direction", "direction_source"}``, as the report records it."""
        return {
            "score": self.score,
            "direction": self.direction,
            "direction_source": self.source(self.score),
        }


def resolve_risk(
    risk_score: str | None = None,
    overrides: Mapping[str, str] | None = None,
    available: Iterable[str] | None = None,
) -> Risk:
    """Resolve the risk score and every score's direction, once.

    Args:
        risk_score: the score that ranks samples; default :func:`default_risk_score`
            of ``available``.
        overrides: score → direction the configuration sets (``"higher_is_riskier"`` or
            ``"lower_is_riskier"``); every other score keeps its shipped direction.
        available: the scores this run has (default: all); the risk score must be one.

    Returns:
        The :class:`Risk`.

    Raises:
        ValueError: an unknown score or direction, or a risk score that is not available.
    """
    names = SCORES.select(list(available)) if available is not None else ALL_SCORES
    given = dict(overrides or {})
    for name, direction in given.items():
        SCORES.check(name)
        if direction not in get_args(Direction):
            choices = " or ".join(get_args(Direction))
            raise ValueError(f"score {name!r}: direction {direction!r} is not {choices}")
    score = risk_score or default_risk_score(names)
    SCORES.check(score)
    if score not in names:
        raise ValueError(f"risk score {score!r} is not among the given scores")
    directions = {n: cast(Direction, given.get(n, spec.direction)) for n, spec in SCORES.items()}
    return Risk(score, directions, frozenset(given))
