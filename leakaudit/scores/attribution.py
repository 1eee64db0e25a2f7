"""Each block's part of the I²F error vector: which sample of a batch the predicted
reconstruction error of the whole batch leaves least protected.

When x is a batch of B samples (d = B·d₁), the I²F error vector e = (A + εI)⁻¹Jᵀδ
(A = JᵀJ, Zhang et al. 2023) splits into one block per sample, e = (e₁, ..., e_B), and
E‖e‖² = Σ_i E‖e_i‖². Sample i's part is

    E‖e_i‖² = ‖P_i (A + εI)⁻¹Jᵀb‖² + s² tr(P_i f(A) P_i),    f(λ) = λ/(λ + ε)²,

with P_i the coordinates of sample i. The bias part is a block of the CG solution; the
noise part is a block of Hutchinson's diagonal estimator E[z ⊙ f(A)z] (Bekas, Kokiopoulou
& Saad 2007), with f(A)z read off the Lanczos run that already gives the SLQ trace:
f(A)z ≈ ‖z‖ Q S f(Θ) Sᵀe₁ (Q the Lanczos basis, T = SΘSᵀ). Summed over the blocks it
is exactly the SLQ sample zᵀf(A)z, so the parts add up to the batch's I²F²; with the
standard basis as probes and an exhausted Krylov space every part is exact.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from leakaudit.linalg.lanczos import LanczosRun, Ritz


def block_quadrature(
    run: LanczosRun, ritz: Ritz, probes: slice, f: Callable[[Tensor], Tensor], blocks: int
) -> Tensor:
    """Per-block SLQ samples Σ_{j ∈ block} z_j (f(A)z)_j, ``[B, m, blocks]``.

    Args:
        run: the Lanczos run; the sequences ``probes`` started at probes z with ‖z‖² = d.
        ritz: its Ritz decomposition.
        probes: the sequences that started at the trace probes.
        f: the spectral function, ``[B, m, n] -> [B, m, n]``.
        blocks: equal consecutive blocks of the d coordinates (d divisible by it).
    """
    basis = run.basis[:, probes]  # [B, m, n, d]
    d = basis.shape[-1]
    weights = f(ritz.values[:, probes]) * ritz.first[:, probes]  # f(Θ) Sᵀe₁, [B, m, n]
    coeff = (ritz.vectors[:, probes] @ weights[..., None]).squeeze(-1)  # S f(Θ) Sᵀe₁
    f_q = (basis * coeff[..., None]).sum(-2)  # f(A) q₁, [B, m, d]
    q1 = basis[:, :, 0]
    parts = d * q1 * f_q  # z ⊙ f(A) z with z = √d q₁
    return parts.reshape(*parts.shape[:2], blocks, d // blocks).sum(-1)


def block_sq_norms(v: Tensor, blocks: int) -> Tensor:
    """‖v_i‖² of the ``blocks`` equal consecutive blocks of ``v`` ``[B, d]``: ``[B, blocks]``."""
    return v.reshape(v.shape[0], blocks, -1).pow(2).sum(-1)
