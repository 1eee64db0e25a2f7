"""Trace estimation: probes, Hutchinson (1990) and stochastic Lanczos quadrature
(Ubaru, Chen & Saad 2017).

For a probe z with ‖z‖² = d and a symmetric A, zᵀ f(A) z = d · Σ_j τ_j² f(θ_j) exactly
when the Krylov space of z is exhausted, and to Gauss-quadrature accuracy otherwise
(θ_j, τ_j: Ritz values and first eigenvector components of the Lanczos tridiagonal
started at z/√d). With the d standard basis vectors as probes the estimate is exact.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor


def sample_generator(seed: int, index: int, purpose: int) -> torch.Generator:
    """A CPU generator that depends only on (seed, sample index, purpose)."""
    state = np.random.SeedSequence([seed, index, purpose]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def probe_vectors(
    indices: Tensor, d: int, n_probes: int, *, seed: int, purpose: int, dtype: torch.dtype
) -> Tensor:
    """Probes ``[B, n, d]`` with ‖z‖² = d: Rademacher per sample (n = n_probes), or the
    scaled standard basis √d·e_i when ``n_probes >= d`` (n = d, making traces exact)."""
    B = indices.shape[0]
    if n_probes >= d:
        eye = torch.eye(d, dtype=dtype) * d**0.5
        return eye.expand(B, d, d).clone()
    out = torch.empty(B, n_probes, d, dtype=dtype)
    for b, idx in enumerate(indices.tolist()):
        gen = sample_generator(seed, idx, purpose)
        out[b] = torch.randint(0, 2, (n_probes, d), generator=gen).to(dtype) * 2 - 1
    return out


def mean_and_se(samples: Tensor, exact: bool) -> tuple[Tensor, Tensor]:
    """Mean over the last axis and its standard error (0 when the probes were exact)."""
    mean = samples.mean(-1)
    n = samples.shape[-1]
    if exact:
        return mean, torch.zeros_like(mean)
    if n < 2:
        return mean, torch.full_like(mean, float("nan"))
    return mean, samples.std(-1, unbiased=True) / n**0.5


def quadrature(values: Tensor, first: Tensor, d: int, f: Callable[[Tensor], Tensor]) -> Tensor:
    """SLQ samples d · Σ_j τ_j² f(θ_j), shape ``values.shape[:-1]``."""
    return d * (first.pow(2) * f(values)).sum(-1)


def union_rayleigh_ritz(
    basis: Tensor, products: Tensor, rank_tol: float
) -> tuple[Tensor, Tensor, Tensor]:
    """An orthonormal basis of the span of several Krylov bases, and A on it, without
    products with A.

    Each of a sample's Lanczos sequences is orthonormal on its own; together they span a
    space 𝒬. The SVD of the stacked vectors V = U S Wh gives orthonormal rows q_i of Wh,
    and A q_i = (Uᵀ A V)_i / s_i from the products the recurrences already give. A
    direction whose s_i is below ``rank_tol`` times the largest counts as not spanned
    (1/s_i would amplify the rounding in A V): its A q_i is unknown. When every A q_i of a
    complete basis is known, H = Q A Qᵀ is similar to A (Rayleigh–Ritz, Saad, "Numerical
    Methods for Large Eigenvalue Problems", §4.3): see :func:`ritz_values`.

    Args:
        basis: ``[B, M, d]`` the stacked Lanczos vectors (zero rows allowed).
        products: ``[B, M, d]`` A applied to each of them.
        rank_tol: relative singular-value threshold.

    Returns:
        ``(Q, AQ, known)`` in float64: ``Q`` ``[B, d, d]`` an orthonormal basis of the whole
        space (spanned directions first), ``AQ`` their products (zero where unknown),
        ``known`` ``[B, d]`` bool. A sample with a non-finite vector has nothing known.
    """
    V, AV = basis.double(), products.double()
    bad = ~(torch.isfinite(V).flatten(1).all(1) & torch.isfinite(AV).flatten(1).all(1))
    V = torch.where(bad[:, None, None], torch.zeros_like(V), V)
    AV = torch.where(bad[:, None, None], torch.zeros_like(AV), AV)
    B, M, d = V.shape
    U, S, Wh = torch.linalg.svd(V, full_matrices=M < d)  # Wh: [B, d, d], a complete basis
    known = (S > rank_tol * S[:, :1].clamp_min(torch.finfo(S.dtype).tiny)) & ~bad[:, None]
    inv = torch.where(known, 1 / S.clamp_min(torch.finfo(S.dtype).tiny), 0)
    AQ = V.new_zeros(B, d, d)
    AQ[:, : S.shape[1]] = inv[..., None] * (U[..., : S.shape[1]].mT @ AV)
    return Wh, AQ, torch.cat([known, known.new_zeros(B, d - S.shape[1])], dim=1)


def ritz_values(Q: Tensor, AQ: Tensor) -> Tensor:
    """Eigenvalues ``[B, k]`` (ascending) of H = Q A Qᵀ (symmetrised) from ``Q`` and ``AQ``
    ``[B, k, d]``; with k = d, the eigenvalues of A: tr A = Σ θ, tr f(A) = Σ f(θ)."""
    H = Q @ AQ.mT
    return torch.linalg.eigvalsh((H + H.mT) / 2)


def project_out(Z: Tensor, basis: Tensor) -> Tensor:
    """(I − QᵀQ) z for each row z of ``Z`` ``[B, n, d]``; ``basis`` ``[B, k, d]`` has
    orthonormal (or zero) rows."""
    return Z - torch.matmul(torch.matmul(Z, basis.mT), basis)
