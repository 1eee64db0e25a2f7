"""Products for the active samples only.

Lanczos and CG run one independent sequence (or system) per sample and freeze a sample
(or one of its sequences) once it is done. A frozen vector is zero, so computing its
product would only multiply zeros: :func:`apply_active` computes the product for the
samples and sequences still running, through the operator's ``restrict`` (and
``columns``), and leaves zeros for the others.
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


@runtime_checkable
class ColumnRestrictable(Protocol):
    """An operator on ``[B, m, d]`` that applies a different operator per column (e.g.
    one per kind of Lanczos sequence) and can drop columns."""

    def columns(self, cols: Tensor) -> Restrictable:
        """The operator of the columns ``cols`` (``[m]`` bool), applied to ``V[:, cols]``."""
        ...


#: What the solvers accept: a restrictable operator or a plain product on all samples.
Operator = Restrictable | Callable[[Tensor], Tensor]


def apply_active(
    operator: Operator, V: Tensor, active: Tensor, alive: Tensor | None = None
) -> Tensor:
    """``operator @ V`` for the ``active`` samples (``[B]`` bool) only, and, given
    ``alive`` (``[B, m]`` bool, for ``V`` ``[B, m, d]``), for each sample's alive vectors
    only.

    The rows (and vectors) left out are zero — what a linear operator gives for their
    zero vectors — and cost nothing: the samples are grouped by which of their vectors are
    alive, one product per group. A plain callable is applied to all of ``V``.
    """
    if not isinstance(operator, Restrictable):
        return operator(V)
    if alive is None:
        return _on_rows(operator, V, active)
    alive = alive & active[:, None]
    patterns, group = torch.unique(alive.to(torch.uint8), dim=0, return_inverse=True)
    if patterns.shape[0] == 1 and bool(patterns.bool().all()):  # everything runs
        return _on_rows(operator, V, active)
    out = torch.zeros_like(V)
    for k, pattern in enumerate(patterns.bool()):
        rows = group == k
        if bool(pattern.all()):
            out += _on_rows(operator, V, rows)
        elif bool(pattern.any()):
            op = operator.columns(pattern) if isinstance(operator, ColumnRestrictable) else operator
            out[:, pattern] += _on_rows(op, V[:, pattern], rows)
    return out


def _on_rows(operator: Restrictable, V: Tensor, active: Tensor) -> Tensor:
    if bool(active.all()):
        return operator @ V
    out = torch.zeros_like(V)
    idx = active.nonzero()[:, 0]
    if idx.numel():
        out[idx] = operator.restrict(idx) @ V[idx]
    return out
