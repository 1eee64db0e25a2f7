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
