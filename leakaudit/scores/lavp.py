"""Loss-aware vulnerability proxies (Hong et al. 2023, "Foreseeing Reconstruction Quality
of Gradient Inversion: An Optimization Perspective").

At x = x* the gradient-matching loss is minimal, so only its Gauss–Newton term survives:

* L2:     H₂ = ∇²ₓ‖g(x) − g*‖²       = 2 JᵀJ
* cosine: H_c = ∇²ₓ(1 − cos(g(x), g*)) = Jᵀ(I − uuᵀ)J / ‖g*‖²,   u = g*/‖g*‖

and H_c v = (JᵀJ v − w (wᵀv)) / ‖g*‖² with w = Jᵀu reuses the L2 products.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from leakaudit.linalg.lanczos import LanczosRun, Ritz


def cosine_matvec(
    gram: Callable[[Tensor], Tensor], w: Tensor, grad_norm: Tensor
) -> Callable[[Tensor], Tensor]:
    """H_c V from JᵀJ V: ``w`` = Jᵀu ``[B, d]``, ``grad_norm`` ``[B]``; V is ``[B, m, d]``."""

    def mv(V: Tensor) -> Tensor:
        return cosine_from_gram(gram(V), V, w, grad_norm)

    return mv


def cosine_from_gram(AV: Tensor, V: Tensor, w: Tensor, grad_norm: Tensor) -> Tensor:
    """(JᵀJ V − w (wᵀV)) / ‖g*‖² given ``AV`` = JᵀJ V, all ``[B, m, d]``."""
    wv = torch.einsum("bd,bmd->bm", w, V)
    return (AV - w[:, None, :] * wv[..., None]) / grad_norm.pow(2)[:, None, None]


def extreme(ritz: Ritz, seqs: slice, end: str) -> tuple[Tensor, Tensor, Tensor]:
    """Best Ritz value over the sequences ``seqs`` at one end of the spectrum.

    Every Ritz value lies inside the spectrum, so the largest θ_max (smallest θ_min) over
    independent sequences is the tightest estimate.

    Returns:
        value ``[B]``, the winning sequence ``[B]`` and its Ritz column ``[B]``.
    """
    vals = ritz.values[:, seqs]
    col = vals.shape[-1] - 1 if end == "max" else 0
    at_end = vals[..., col]
    seq = at_end.argmax(-1) if end == "max" else at_end.argmin(-1)
    value = at_end.gather(1, seq[:, None]).squeeze(1)
    start = seqs.start or 0
    return value, seq + start, torch.full_like(seq, col)


def estimated_residual(ritz: Ritz, seq: Tensor, col: Tensor) -> Tensor:
    """The Lanczos residual estimate of the chosen Ritz pairs, ``[B]``."""
    rb = ritz.residual_bound.gather(1, seq[:, None, None].expand(-1, 1, ritz.values.shape[-1]))
    return rb.squeeze(1).gather(1, col[:, None]).squeeze(1)


def ritz_vector(run: LanczosRun, ritz: Ritz, seq: Tensor, col: Tensor) -> Tensor:
    """The chosen Ritz vectors, ``[B, d]``."""
    which = torch.zeros(run.alpha.shape[:2], dtype=torch.long, device=seq.device)
    which[torch.arange(seq.shape[0]), seq] = col
    Y = run.ritz_vectors(ritz, which)
    return Y[torch.arange(seq.shape[0]), seq]
