"""Inversion influence functions (Zhang et al. 2023, "Understanding Deep Gradient Leakage via
Inversion Influence Functions").

For a defence δ = b + ξ (bias b, zero-mean noise ξ of per-coordinate variance s²) and
A = JᵀJ:

* ``i2f_lb`` = √E‖Jᵀδ‖² / λ_max(A)            = √(‖Jᵀb‖² + s² tr A) / λ_max(A)
* ``i2f``    = √E‖(A + εI)⁻¹ Jᵀδ‖²            = √(‖(A + εI)⁻¹ Jᵀb‖² + s² tr((A + εI)⁻² A))

with ε = damping · λ_max(A), or ε = damping in absolute mode (:func:`epsilon`). Standard
errors follow by the delta method from the trace estimators' standard errors. Under
Gaussian noise alone (b = 0, s = σ) I²F is linear in σ, which :func:`sigma_needed` inverts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from leakaudit.scores import names as N

if TYPE_CHECKING:
    from leakaudit.scores.options import ScoreOptions


def epsilon(options: ScoreOptions, lam_max: Tensor) -> Tensor:
    """The damping ε of I²F per sample, ``[B]``: the one place its rule lives.

    Args:
        options: ``damping`` and ``damping_mode``.
        lam_max: λ_max(JᵀJ), ``[B]``.

    Returns:
        ``damping · λ_max`` in ``"relative"`` mode (λ_max clamped to the smallest positive
        number of its dtype), ``damping`` itself in ``"absolute"`` mode (the fixed ρ of the
        I²F reference code, Zhang et al. 2023).
    """
    if options.damping_mode == "absolute":
        return torch.full_like(lam_max, options.damping)
    return options.damping * lam_max.clamp_min(torch.finfo(lam_max.dtype).tiny)


def damped_gram_filter(eps: Tensor) -> Callable[[Tensor], Tensor]:
    """f(λ) = λ / (λ + ε)² per sample; ``eps`` ``[B]`` broadcasts over ``[B, m, n]``."""

    def f(lam: Tensor) -> Tensor:
        e = eps[:, None, None]
        lam = lam.clamp_min(0)
        return lam / (lam + e).pow(2)

    return f


def i2f_from_moments(
    bias_term: Tensor, noise_var: Tensor, trace: Tensor, trace_se: Tensor
) -> tuple[Tensor, Tensor]:
    """√(c + s²·t) and its standard error, all ``[B]``.

    Args:
        bias_term: c, the squared norm of the (solved) bias image.
        noise_var: s².
        trace: t, the estimated trace.
        trace_se: standard error of t.
    """
    value = (bias_term + noise_var * trace).clamp_min(0).sqrt()
    se = noise_var * trace_se / (2 * value.clamp_min(torch.finfo(value.dtype).tiny))
    return value, torch.where(noise_var > 0, se, torch.zeros_like(se))


def require_lambda_max(scores: dict[str, Tensor], diag: dict[str, Tensor]) -> None:
    """``i2f`` and ``i2f_lb`` divide by or damp with λ_max: each converges only where
    λ_max did (and its own solve, where it has one)."""
    lam_ok = diag[N.converged_key(N.LAVP_L2_MAX)]
    for name in (N.I2F_LB, N.I2F):
        if name in scores:
            key = N.converged_key(name)
            diag[key] = lam_ok & diag.get(key, lam_ok)


def sigma_needed(i2f_unit_sigma: np.ndarray, target_error: float) -> np.ndarray:
    """The Gaussian noise σ at which I²F reaches a target reconstruction error.

    Under Gaussian noise N(0, σ²I) alone, I²F(σ) = σ · I²F(σ=1) (Zhang et al. 2023,
    "Understanding Deep Gradient Leakage via Inversion Influence Functions"), so the
    noise that lifts a sample's predicted error to τ is σ = τ / I²F(σ=1).

    Args:
        i2f_unit_sigma: ``[N]`` I²F at σ = 1 (the engine's ``i2f_unit_sigma``).
        target_error: τ.

    Returns:
        ``[N]`` σ, NaN where I²F(σ=1) is not positive and finite.
    """
    unit = np.asarray(i2f_unit_sigma, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = target_error / unit
    return np.where(np.isfinite(unit) & (unit > 0), out, np.nan)
