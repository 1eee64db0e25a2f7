"""Products for the active samples only.

Lanczos and CG run one independent sequence (or system) per sample and freeze a sample
once it is done. A frozen sample's vectors are zero, so computing its product would only
multiply zeros: :func:`apply_active` computes the product for the samples still running,
through the operator's ``restrict``, and leaves zero rows for the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class Restrictable(Protocol):
    """A batched operator (``@`` on ``[B, m, d]`` or ``[B, d]``) with per-sample subsets."""

    def __matmul__(self, V: Tensor) -> Tensor: ...

    def restrict(self, idx: Tensor) -> Restrictable:
        """The operators of the samples ``idx`` (``[b]`` int64, ascending)."""
        ...


#: What the solvers accept: a restrictable operator or a plain product on all samples.
Operator = Restrictable | Callable[[Tensor], Tensor]


def apply_active(operator: Operator, V: Tensor, active: Tensor) -> Tensor:
    """``operator @ V`` for the ``active`` samples (``[B]`` bool) only.

    The rows of the other samples are zero — what a linear operator gives for their zero
    vectors — and cost nothing. A plain callable is applied to all of ``V``.
    """
    if not isinstance(operator, Restrictable):
        return operator(V)
    if bool(active.all()):
        return operator @ V
    out = torch.zeros_like(V)
    idx = active.nonzero()[:, 0]
    if idx.numel():
        out[idx] = operator.restrict(idx) @ V[idx]
    return out
