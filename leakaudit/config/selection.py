"""Which scores a scan computes, and why: the one resolution of ``scores.select``.

``scores.select`` is ``auto`` (the default), ``all``, or a list of score names:

* ``auto``: only what the scan reads: the risk score (``risk``), every score a gate rule
  reads (``gate:<rule>``; a baseline comparison reads the same rules' scores), and the
  scores of the calibration's rule (``calibration``). The gradient norm alone costs one
  backward pass per sample; every other score needs Lanczos runs (docs/scores.md).
* ``all``: every score (``requested``).
* a list: those scores (``requested``), plus a calibration's; the configuration refuses a
  list that lacks the risk score or a gate rule's score.

:func:`resolve_selection` serves ``api.scan`` (what the engine computes, what the partial
results of ``--resume`` must hold) and the report (what it says was computed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from leakaudit.calibration.apply import PSNR_RULE
from leakaudit.config.schema import GateRule, ScanConfig
from leakaudit.direction import Direction
from leakaudit.scores.names import ALL_SCORES

#: ``scores.select`` values that name no score: compute what the scan reads, or everything.
AUTO = "auto"
ALL = "all"
SelectMode = Literal["auto", "all"]

#: The reason a score the user asked for (``--scores``, ``scores.select``) is computed.
REQUESTED = "requested"


@dataclass(frozen=True)
class Selection:
    """The scores a scan computes.

    Attributes:
        requested: ``"auto"``, ``"all"``, or the names the user listed (report order).
        computed: the scores computed, in report order.
        reasons: every computed score → why (``"risk"``, ``"gate:<rule>"``,
            ``"calibration"``, ``"requested"``).
    """

    requested: SelectMode | tuple[str, ...]
    computed: tuple[str, ...]
    reasons: dict[str, tuple[str, ...]]

    def to_dict(self) -> dict[str, Any]:
        """The report's ``scores`` section: ``{"requested", "computed", "reasons"}``."""
        requested = self.requested if isinstance(self.requested, str) else list(self.requested)
        return {
            "requested": requested,
            "computed": list(self.computed),
            "reasons": {name: list(why) for name, why in self.reasons.items()},
        }


def rule_label(rule: GateRule, direction: Direction) -> str:
    """A gate rule as a reason: ``gate:i2f<0.5``, ``gate:grad_norm>p95``; without
    ``risky_when`` the rule reads its score in ``direction``."""
    below = rule.risky_when == "below" or (
        rule.risky_when is None and direction == "lower_is_riskier"
    )
    way = "<" if below else ">"
    value = f"p{rule.percentile:g}" if rule.percentile is not None else f"{rule.threshold:g}"
    return f"gate:{rule.score}{way}{value}"


def resolve_selection(config: ScanConfig, calibration_scores: Sequence[str] = ()) -> Selection:
    """The scores ``config`` needs computed, and why each one.

    Args:
        config: the scan's configuration (``scores.select``, ``scores.risk_score``,
            ``gate.rules``); the configuration has already refused a list of scores
            without the risk score or a gate rule's score.
        calibration_scores: the scores the calibration's rule reads (``--calibration``).

    Returns:
        The :class:`Selection`, scores in report order.
    """
    select = config.scores.select
    why: dict[str, list[str]] = {}

    def need(name: str, reason: str) -> None:
        reasons = why.setdefault(name, [])
        if reason not in reasons:
            reasons.append(reason)

    if not isinstance(select, str):
        for name in select:
            need(name, REQUESTED)
    elif select == ALL:
        for name in ALL_SCORES:
            need(name, REQUESTED)
    need(config.scores.risk_score, "risk")
    directions = config.scores.risk().directions
    for rule in config.gate.rules:
        if rule.score != PSNR_RULE:
            need(rule.score, rule_label(rule, directions[rule.score]))
    for name in calibration_scores:
        need(name, "calibration")
    computed = tuple(n for n in ALL_SCORES if n in why)
    requested: SelectMode | tuple[str, ...] = (
        select if isinstance(select, str) else tuple(n for n in ALL_SCORES if n in select)
    )
    return Selection(requested, computed, {n: tuple(why[n]) for n in computed})
