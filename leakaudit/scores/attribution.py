"""Each block's part of the I²F error vector: which sample of a batch the predicted
reconstruction error of the whole batch leaves least protected.

When x is a batch of B samples (d = B·d₁), the I²F error vector e = (A + εI)⁻¹Jᵀδ
(A = JᵀJ, Zhang et al. 2023) splits into one block per sample, e = (e₁, ..., e_B), and
E‖e‖² = Σ_i E‖e_i‖². Sample i's part is

    E‖e_i‖² = ‖P_i (A + εI)⁻¹Jᵀb‖² + s² tr(P_i f(A) P_i),    f(λ) = λ/(λ + ε)²,

with P_i the coordinates of sample i. The bias part is a block of the CG solution. The
noise part is estimated with *block-local* probes: probe k is a Rademacher vector on block
k mod B only, scaled to ‖z‖² = d, so its SLQ sample zᵀf(A)z has mean B·tr(P_i f(A) P_i).
Averaged over all probes (the same number per block) the samples still estimate tr f(A)
without bias, the blocks' parts add up to that estimate exactly, and every part is
non-negative (f ≥ 0) — unlike Hutchinson's diagonal estimator E[z ⊙ f(A)z] with global
probes, whose cross terms make small blocks' estimates negative. With the standard basis
as probes (``n_probes ≥ d``) every part is exact. Where the batch's own noise term is
known more accurately (exactly, from the eigenvalues of JᵀJ), the engine scales the
parts to sum to it: the probes then estimate the blocks' shares, not the total.
"""

from __future__ import annotations

import torch
from torch import Tensor


def block_local(Z: Tensor, blocks: int) -> Tensor:
    """Probes ``[B, n, d]`` (‖z‖² = d) restricted each to block ``k mod blocks`` and
    rescaled to ‖z‖² = d; ``n`` must be a multiple of ``blocks``."""
    _, n, d = Z.shape
    owner = torch.arange(n, device=Z.device) % blocks
    mask = owner[:, None] == torch.arange(blocks, device=Z.device)[None, :]  # [n, blocks]
    mask = mask.repeat_interleave(d // blocks, dim=1)  # [n, d]
    return Z * mask.to(Z.dtype) * blocks**0.5


def block_parts(samples: Tensor, starts: Tensor, blocks: int) -> Tensor:
    """Each block's part of the mean of SLQ ``samples`` ``[B, n]``, ``[B, blocks]``: a
    probe's sample goes to the block its start vector ``starts`` ``[B, n, d]`` lies in."""
    B, n, d = starts.shape
    mass = starts.reshape(B, n, blocks, d // blocks).pow(2).sum(-1)  # [B, n, blocks]
    owner = mass.argmax(-1, keepdim=True)
    onehot = torch.zeros_like(mass).scatter_(-1, owner, 1.0)
    return (samples[..., None] * onehot).sum(1) / n


def block_sq_norms(v: Tensor, blocks: int) -> Tensor:
    """‖v_i‖² of the ``blocks`` equal consecutive blocks of ``v`` ``[B, d]``: ``[B, blocks]``."""
    return v.reshape(v.shape[0], blocks, -1).pow(2).sum(-1)
