"""Batched conjugate gradients for damped Gram systems (JᵀJ + εI) s = r (Hestenes &
Stiefel 1952), one independent system per sample."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class CGResult:
    """Solutions ``[B, d]``, relative residuals ``[B]``, iterations, convergence ``[B]``."""

    solution: Tensor
    relative_residual: Tensor
    iterations: int
    converged: Tensor


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor],
    rhs: Tensor,
    *,
    tol: float = 1e-5,
    max_iter: int = 500,
) -> CGResult:
    """Solve ``matvec(s) = rhs`` for every row, a symmetric positive definite operator each.

    Args:
        matvec: ``[B, d] -> [B, d]``.
        rhs: ``[B, d]``.
        tol: stop when ‖r‖ ≤ tol·‖rhs‖ for every row.
        max_iter: iterations at most.
    """
    tiny = torch.finfo(rhs.dtype).tiny
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    rr = (r * r).sum(-1)
    norm_b = rr.sqrt().clamp_min(tiny)
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        Ap = matvec(p)
        pAp = (p * Ap).sum(-1)
        step = torch.where(pAp > 0, rr / pAp.clamp_min(tiny), torch.zeros_like(rr))
        x = x + step[:, None] * p
        r = r - step[:, None] * Ap
        rr_new = (r * r).sum(-1)
        if bool((rr_new.sqrt() <= tol * norm_b).all()):
            rr = rr_new
            break
        p = r + (rr_new / rr.clamp_min(tiny))[:, None] * p
        rr = rr_new
    rel = rr.sqrt() / norm_b
    return CGResult(x, rel, it, rel <= tol)
