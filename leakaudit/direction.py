"""Which way is risky (scores) or better (quality metrics), and one rule that orients values.

A score says whether a larger value means a more exposed sample
(``"higher_is_riskier"``) or a safer one (``"lower_is_riskier"``); a quality metric says
whether a larger value means a better reconstruction (``"higher_is_better"``, PSNR and
SSIM) or a worse one (``"lower_is_better"``, MSE and LPIPS). :func:`orient` turns either
into "larger = riskier" (or "larger = better") by its :func:`sign`; every ranking,
selection, agreement statistic and gate rule asks it instead of testing the strings.
"""

from __future__ import annotations

from typing import Literal, overload

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import Tensor

from leakaudit.registry import unknown_message

#: A score's risk direction.
Direction = Literal["higher_is_riskier", "lower_is_riskier"]

#: A quality metric's direction.
MetricDirection = Literal["higher_is_better", "lower_is_better"]

#: Every direction, score or metric.
AnyDirection = Direction | MetricDirection

_SIGNS: dict[str, int] = {
    "higher_is_riskier": 1,
    "lower_is_riskier": -1,
    "higher_is_better": 1,
    "lower_is_better": -1,
}


def sign(direction: AnyDirection | str) -> int:
    """``+1`` when larger values are riskier (better), ``−1`` when smaller ones are.

    Raises:
        ValueError: ``direction`` is not one of the four directions.
    """
    try:
        return _SIGNS[direction]
    except KeyError:
        raise ValueError(unknown_message("direction", direction, _SIGNS)) from None


@overload
def orient(values: Tensor, direction: AnyDirection | str) -> Tensor: ...
@overload
def orient(values: ArrayLike, direction: AnyDirection | str) -> NDArray[np.float64]: ...
def orient(
    values: ArrayLike | Tensor, direction: AnyDirection | str
) -> Tensor | NDArray[np.float64]:
    """``[N]`` values as float64, negated unless larger is riskier (or better).

    A tensor comes back as a float64 tensor on the CPU, anything else as a float64
    numpy array. NaN stays NaN and ±inf keeps its place at the risky or safe end, so
    callers that rank non-finite values last do so whatever the direction.

    Args:
        values: ``[N]`` score (or quality) values.
        direction: the score's (or metric's) direction.

    Returns:
        ``[N]`` oriented values: larger means riskier (better).
    """
    s = float(sign(direction))
    if isinstance(values, Tensor):
        return s * values.detach().to("cpu", torch.float64)
    return s * np.asarray(values, dtype=np.float64)
