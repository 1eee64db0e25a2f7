"""Batched conjugate gradients for damped Gram systems (JᵀJ + εI) s = r (Hestenes &
Stiefel 1952), one independent system per sample.

Each row stops on its own tolerance and is frozen from then on, so a row's solution does
not depend on the other rows of the batch; given an operator with ``restrict``
(:mod:`leakaudit.linalg.active`), a sample whose rows are all done costs no product."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from leakaudit.linalg.active import Operator, apply_active


@dataclass
class CGResult:
    """Solutions ``[*S, d]``; relative residuals, iterations and convergence ``[*S]``."""

    solution: Tensor
    relative_residual: Tensor
    iterations: Tensor
    converged: Tensor


def conjugate_gradient(
    matvec: Operator,
    rhs: Tensor,
    *,
    tol: float = 1e-5,
    max_iter: int = 500,
) -> CGResult:
    """Solve ``matvec(s) = rhs`` for every row, a symmetric positive definite operator each.

    Args:
        matvec: ``[*S, d] -> [*S, d]`` (e.g. ``S = (B,)`` or ``(B, m)``); an operator with
            ``restrict`` is applied to the samples (leading axis) with a running row only.
        rhs: ``[*S, d]``; every row (last axis) is an independent system.
        tol: a row stops when ‖r‖ ≤ tol·‖rhs‖.
        max_iter: iterations at most.
    """
    tiny = torch.finfo(rhs.dtype).tiny
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    rr = (r * r).sum(-1)
    norm_b = rr.sqrt().clamp_min(tiny)
    active = rr.sqrt() > tol * norm_b
    iterations = torch.zeros(rhs.shape[:-1], dtype=torch.int64, device=rhs.device)
    for _ in range(max_iter):
        if not bool(active.any()):
            break
        iterations += active.to(torch.int64)
        Ap = apply_active(matvec, p, active.flatten(1).any(-1) if active.ndim > 1 else active)
        pAp = (p * Ap).sum(-1)
        step = torch.where(active & (pAp > 0), rr / pAp.clamp_min(tiny), torch.zeros_like(rr))
        x = x + step[..., None] * p
        r = r - step[..., None] * Ap
        rr_new = (r * r).sum(-1)
        still = active & (rr_new.sqrt() > tol * norm_b)
        p = torch.where(still[..., None], r + (rr_new / rr.clamp_min(tiny))[..., None] * p, p)
        rr = torch.where(active, rr_new, rr)
        active = still
    rel = rr.sqrt() / norm_b
    return CGResult(x, rel, iterations, rel <= tol)
