"""Exact scores for small inputs: the Jacobian formed densely, the spectra by eigh.

When the input dimension d is small (``ScoreOptions.dense_max_dim``), each sample's
Jacobian J = ∂g/∂x (P × d) costs d J·v products (``jv_many``: reverse over reverse for a
plain gradient) — fewer than one Lanczos run of the iterative path, which needs a J·v and
a Jᵀ·u per step and sequence. J is formed a few samples at a time (:func:`gram`) in the
chunk's dtype and reduced at once to the d × d and d-sized quantities below, which are
formed and diagonalised in float64:

* A = JᵀJ, H₂ = 2A and H_c = (A − w wᵀ)/‖g*‖² with w = Jᵀu, u = g*/‖g*‖ (Hong et al.
  2023, the operators of :mod:`leakaudit.scores.lavp`), diagonalised by ``eigh``;
* I²F (Zhang et al. 2023, :mod:`leakaudit.scores.i2f`): tr A = ‖J‖²_F, tr f(A) =
  Σ f(λ_i) with f(λ) = λ/(λ + ε)², and the bias image (A + εI)⁻¹Jᵀb from the
  eigenvectors — no estimator, so every standard error is zero.

Residuals are the true ‖H v − θ v‖/θ_max of the eigenpairs and ``lanczos_steps`` is 0;
no random vector is drawn, so the seed plays no part and the values do not depend on how
samples are chunked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from leakaudit.jacobians.protocol import SampleOperators
from leakaudit.scores import names as N
from leakaudit.scores.attribution import block_sq_norms
from leakaudit.scores.i2f import (
    damped_gram_filter,
    epsilon,
    i2f_from_moments,
    require_lambda_max,
)
from leakaudit.scores.lavp import Scores, geometric_mean, no_cosine_without_gradient, record_end
from leakaudit.scores.options import ScoreOptions
from leakaudit.scores.plan import Plan

#: P-vectors a J·v product keeps alive per basis vector (tangents of the forward and
#: backward passes); sizes the blocks of basis vectors pushed at once.
_TANGENTS_PER_VECTOR = 6


#: Bytes of Jacobians formed at once on the CPU (:func:`gram`).
WORKING_SET = 16 * 2**20

#: Plans that need only λ_max (``lavp_*_max``, ``i2f_lb``) take a few dozen Lanczos
#: products per sample: the dense path pays off for them only up to this fraction of
#: ``dense_max_dim`` (measured in docs/performance.md).
CHEAP_PLAN_FRACTION = 4


def applies(options: ScoreOptions, plan: Plan, d: int) -> bool:
    """Whether a chunk of d-dimensional inputs is scored densely: some spectral work is
    planned and d ≤ ``dense_max_dim`` (0 disables the dense path), or, for a plan that
    needs no λ_min and no I²F quadrature, d ≤ ``dense_max_dim`` // 4."""
    costly = plan.slq or plan.l2_min or plan.cos_min
    limit = options.dense_max_dim if costly else options.dense_max_dim // CHEAP_PLAN_FRACTION
    return plan.lanczos and d <= limit


def jacobian(ops: SampleOperators, memory_budget: int) -> Tensor:
    """Every sample's Jᵀ ``[B, d, P]`` (row i = J eᵢ) from the d standard basis vectors,
    d J·v products per sample (``jv_many``), pushed in blocks sized so that their
    tangents fit ``memory_budget``."""
    g, d = ops.grads, ops.dim
    B, P = g.shape
    per_vector = _TANGENTS_PER_VECTOR * B * P * g.element_size()
    block = int(max(1, min(d, memory_budget // max(per_vector, 1))))
    if block == d:
        return ops.jv_many(torch.eye(d, dtype=g.dtype, device=g.device).expand(B, -1, -1))
    eye = torch.eye(d, dtype=g.dtype, device=g.device)
    Jt = g.new_empty(B, d, P)
    for start in range(0, d, block):
        Jt[:, start : start + block] = ops.jv_many(eye[start : start + block].expand(B, -1, -1))
    return Jt


def gram(
    ops: SampleOperators, memory_budget: int, images: tuple[Tensor | None, ...] = ()
) -> tuple[Tensor, list[Tensor | None]]:
    """A = JᵀJ ``[B, d, d]`` and Jᵀ U for each ``U`` ``[B, P]`` of ``images`` (``[B, d]``;
    None stays None), all float64, without keeping every sample's J: on the CPU the
    samples go through in groups whose Jacobians fill about :data:`WORKING_SET` bytes,
    so the P-sized work reuses the same memory (on a loaded 2-core machine, forming the
    demo's 100 Jacobians at once spent half its time faulting in fresh pages)."""
    g, d = ops.grads, ops.dim
    B, P = g.shape
    group = B if g.device.type != "cpu" else max(1, WORKING_SET // (d * P * g.element_size()))
    A = g.new_empty(B, d, d, dtype=torch.float64)
    out = [None if U is None else g.new_empty(B, d, dtype=torch.float64) for U in images]
    for start in range(0, B, group):
        idx = torch.arange(start, min(B, start + group), device=g.device)
        Jt = jacobian(ops if len(idx) == B else ops.restrict(idx), memory_budget)
        A[idx] = torch.bmm(Jt, Jt.transpose(1, 2)).double()
        for U, o in zip(images, out):
            if U is not None and o is not None:
                o[idx] = _apply(Jt, U[idx])
    return A, out


@dataclass
class _Eig:
    """An operator ``[B, d, d]`` (float64) and its ascending eigenpairs."""

    H: Tensor
    values: Tensor
    vectors: Tensor

    @classmethod
    def of(cls, H: Tensor) -> _Eig:
        values, vectors = torch.linalg.eigh(H)
        return cls(H, values, vectors)

    def end(self, end: str) -> tuple[Tensor, Tensor]:
        """The eigenvalue ``[B]`` at ``end`` and its residual ‖Hv − λv‖/|λ_max| ``[B]``."""
        col = -1 if end == "max" else 0
        lam, v = self.values[:, col], self.vectors[:, :, col]
        r = torch.linalg.vector_norm(
            torch.einsum("bij,bj->bi", self.H, v) - lam[:, None] * v, dim=1
        )
        top = self.values[:, -1].abs().clamp_min(torch.finfo(lam.dtype).tiny)
        return lam, r / top


def dense_scores(ops: SampleOperators, options: ScoreOptions, plan: Plan) -> tuple[Scores, Scores]:
    """The planned scores and their diagnostics for one chunk, exactly (module docstring).

    Returns:
        ``(scores, diagnostics)``, name → ``[B]`` in the chunk's dtype, like the
        Lanczos path's.
    """
    g = ops.grads
    gnorm = torch.linalg.vector_norm(g, dim=1)
    u = g / gnorm.clamp_min(torch.finfo(g.dtype).tiny)[:, None] if plan.cos else None
    i2f = plan.l2 and (plan.trace or plan.slq)
    bias = options.defense.bias(g) if i2f else None
    A, (w, jt_bias) = gram(ops, options.memory_budget, (u, bias))
    scores: Scores = {N.GRAD_NORM: gnorm}
    diag: Scores = {"converged": torch.ones(g.shape[0], dtype=torch.bool, device=g.device)}
    diag["lanczos_steps"] = torch.zeros(g.shape[0], dtype=torch.long, device=g.device)
    eig = _Eig.of(A) if plan.l2 else None
    if eig is not None:
        _lavp(scores, diag, options, "l2", eig, plan.l2_min)
    if plan.cos and w is not None:
        g2 = gnorm.double().pow(2)
        g2 = torch.where(g2 > 0, g2, torch.ones_like(g2))  # g* = 0: NaN below, not eigh's
        H_c = (A - w[:, :, None] * w[:, None, :]) / g2[:, None, None]
        _lavp(scores, diag, options, "cos", _Eig.of(H_c), plan.cos_min)
        no_cosine_without_gradient(scores, diag, gnorm <= torch.finfo(g.dtype).tiny)
    geometric_mean(scores, diag, options)
    if eig is not None and i2f:
        _i2f(scores, diag, options, plan, jt_bias, g, eig)
    return _cast(scores, g.dtype), _cast(diag, g.dtype)


def _lavp(
    scores: Scores, diag: Scores, options: ScoreOptions, op: str, eig: _Eig, with_min: bool
) -> None:
    """LAVP of one operator (``"l2"``: eig of JᵀJ, scaled by 2; ``"cos"``: eig of H_c),
    certified by the same rule as the Lanczos path's Ritz values."""
    top = eig.values[:, -1].abs()
    for end in ("max", "min") if with_min else ("max",):
        value, residual = eig.end(end)
        record_end(scores, diag, options, op, end, value, residual, top)


def _i2f(
    scores: Scores,
    diag: Scores,
    options: ScoreOptions,
    plan: Plan,
    jt_bias: Tensor | None,
    g: Tensor,
    gram: _Eig,
) -> None:
    """I²F and its lower bound, exactly, from Jᵀb ``[B, d]`` (None: no bias) and the eigh
    of JᵀJ."""
    lam = gram.values[:, -1].clamp_min(torch.finfo(g.dtype).tiny)
    noise_var = options.defense.noise_variance(g).double()
    trace = gram.H.diagonal(dim1=1, dim2=2).sum(-1)  # ‖J‖²_F
    zero = torch.zeros_like(trace)
    diag["trace_jtj"], diag["trace_jtj_se"] = trace, zero
    if plan.trace:
        c = jt_bias.pow(2).sum(1) if jt_bias is not None else zero
        num, _ = i2f_from_moments(c, noise_var, trace, zero)
        scores[N.I2F_LB], diag["i2f_lb_se"] = num / lam, zero
    if plan.slq:
        _i2f_exact(scores, diag, options, gram, epsilon(options, lam), noise_var, jt_bias)
    require_lambda_max(scores, diag)


def _i2f_exact(
    scores: Scores,
    diag: Scores,
    options: ScoreOptions,
    gram: _Eig,
    eps: Tensor,
    noise_var: Tensor,
    jt_bias: Tensor | None,
) -> None:
    """I²F: tr f(JᵀJ) = Σ f(λ_i) and the bias image (JᵀJ + εI)⁻¹Jᵀb by eigenvectors."""
    lam, V = gram.values.clamp_min(0), gram.vectors
    f = damped_gram_filter(eps)(lam[:, None])[:, 0]  # [B, d]
    q = f.sum(-1)
    c, solution = torch.zeros_like(q), None
    if jt_bias is not None:
        coef = torch.einsum("bij,bi->bj", V, jt_bias) / (lam + eps[:, None])
        solution = torch.einsum("bij,bj->bi", V, coef)
        damped = torch.einsum("bij,bj->bi", gram.H, solution) + eps[:, None] * solution
        rhs = torch.linalg.vector_norm(jt_bias, dim=1).clamp_min(torch.finfo(q.dtype).tiny)
        diag["cg_residual"] = torch.linalg.vector_norm(damped - jt_bias, dim=1) / rhs
        diag[N.converged_key(N.I2F)] = diag["cg_residual"] <= options.tol * 10
        c = solution.pow(2).sum(1)
    value, _ = i2f_from_moments(c, noise_var, q, torch.zeros_like(q))
    scores[N.I2F], diag["i2f_se"] = value, torch.zeros_like(q)
    diag["i2f_unit_sigma"] = q.sqrt()
    if options.blocks > 1:
        # each block's part of tr f(A): the block's diagonal entries of V f(Λ) Vᵀ
        part = (V.pow(2) * f[:, None, :]).sum(-1)
        q_blocks = part.reshape(q.shape[0], options.blocks, -1).sum(-1)
        cb = block_sq_norms(solution, options.blocks) if solution is not None else 0 * q_blocks
        diag["i2f_blocks"] = (cb + noise_var[:, None] * q_blocks).clamp_min(0).sqrt()
        diag["i2f_blocks_unit_sigma"] = q_blocks.sqrt()


def _apply(Jt: Tensor, U: Tensor) -> Tensor:
    """Jᵀ U for ``U`` ``[B, P]`` from the formed Jᵀ ``[B, d, P]``, as float64 ``[B, d]``."""
    return torch.bmm(Jt, U[:, :, None])[:, :, 0].double()


def _cast(values: Scores, dtype: torch.dtype) -> Scores:
    """Floating tensors in the chunk's dtype (the Lanczos path's), others as they are."""
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in values.items()}
