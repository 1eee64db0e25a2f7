"""Batched Lanczos with full reorthogonalisation (Golub & Van Loan, §10.1).

Runs many independent Krylov sequences in lockstep — ``[B, m, d]``: B samples, m
sequences per sample, each sequence with its own symmetric operator or start vector —
so one batched matrix-vector product serves every sequence of a step. The tridiagonal
matrices give both ends of each spectrum (Ritz values) and, with the start vector as
probe, Gauss quadrature for stochastic Lanczos quadrature (Ubaru et al. 2017).

Every sample stops on its own: the convergence test answers per sample, and a sample
that has converged (or whose sequences broke down) is frozen while the others go on.
So a sample's result does not depend on which other samples share its batch, and a
frozen sample costs nothing more: given an operator with ``restrict``
(:mod:`leakaudit.linalg.active`), each step's product is computed for the samples still
running only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from leakaudit.linalg.active import Operator, apply_active

MatVec = Callable[[Tensor], Tensor]


@dataclass
class Ritz:
    """Ritz decomposition of the Lanczos tridiagonals.

    Attributes:
        values: ``[B, m, n]`` Ritz values, ascending.
        first: ``[B, m, n]`` first components of T's eigenvectors (quadrature weights are
            their squares).
        vectors: ``[B, m, n, n]`` eigenvectors of T (columns).
        residual_bound: ``[B, m, n]`` β_n·|last component|: the Lanczos estimate of
            ‖A y − θ y‖ for each Ritz pair.
    """

    values: Tensor
    first: Tensor
    vectors: Tensor
    residual_bound: Tensor


@dataclass
class LanczosRun:
    """The result of :func:`lanczos`.

    Attributes:
        alpha: ``[B, m, n]`` diagonal of T (n = steps taken by the longest sequence);
            past a sequence's own length it is padded with α_1.
        beta: ``[B, m, n]`` β_1..β_n; β_j couples steps j and j+1, β at a sequence's
            last step is its residual norm; zero past its length.
        basis: ``[B, m, n, d]`` orthonormal Lanczos vectors (zero past the length).
        steps: n.
        length: ``[B, m]`` steps each sequence took (≤ n).
        residual: ``[B, m, d]`` the last step's residual r (orthogonal to the sequence's
            basis), so that A Q = Q T + r e_lenᵀ for each sequence (:meth:`products`).
    """

    alpha: Tensor
    beta: Tensor
    basis: Tensor
    steps: int
    length: Tensor
    residual: Tensor

    def tridiagonal(self) -> Tensor:
        """``[B, m, n, n]`` T of every sequence (padded as :meth:`ritz` describes)."""
        T = torch.diag_embed(self.alpha)
        if self.steps > 1:
            couples = torch.arange(1, self.steps, device=self.length.device)
            off = torch.where(couples < self.length[..., None], self.beta[..., :-1], 0)
            T = T + torch.diag_embed(off, offset=1) + torch.diag_embed(off, offset=-1)
        return T

    def products(self, seqs: slice) -> Tensor:
        """A q for every Lanczos vector q of the sequences ``seqs``, ``[B, s, n, d]``, from
        the recurrence A Q = Q T + r e_lenᵀ: no product with A (exact up to rounding,
        thanks to the full reorthogonalisation)."""
        Q = self.basis[:, seqs]
        AQ = torch.matmul(self.tridiagonal()[:, seqs].transpose(-1, -2), Q)
        last = (self.length[:, seqs] - 1).clamp_min(0)
        at_last = torch.arange(self.steps, device=last.device) == last[..., None]
        return AQ + at_last[..., None].to(Q.dtype) * self.residual[:, seqs, None, :]

    def ritz(self) -> Ritz:
        """Eigen-decompose every tridiagonal (small: n × n).

        A sequence shorter than n has T = diag(T_len, α_1·I): the padding adds Ritz
        values α_1 (inside the spectrum, quadrature weight 0) and changes nothing else.
        """
        n = self.steps
        T = self.tridiagonal()
        # A non-finite tridiagonal (a NaN gradient) is that sequence's alone: eigh would
        # fail for the whole batch, so it gets NaN Ritz values instead.
        bad = ~torch.isfinite(T).flatten(-2).all(-1)
        T = torch.where(bad[..., None, None], torch.zeros_like(T), T)
        values, vectors = torch.linalg.eigh(T.double())
        values = values.to(self.alpha.dtype).masked_fill(bad[..., None], float("nan"))
        vectors = vectors.to(self.alpha.dtype).masked_fill(bad[..., None, None], float("nan"))
        last = (self.length - 1).clamp_min(0)
        beta_last = self.beta.gather(-1, last[..., None])
        row_last = vectors.gather(-2, last[..., None, None].expand(*last.shape, 1, n))
        bound = beta_last.abs() * row_last.squeeze(-2).abs()
        return Ritz(values, vectors[..., 0, :], vectors, bound)

    def ritz_vectors(self, ritz: Ritz, which: Tensor) -> Tensor:
        """Ritz vectors y = Q s for the column ``which`` ``[B, m]`` of each sequence."""
        s = torch.gather(
            ritz.vectors, 3, which[..., None, None].expand(*which.shape, self.steps, 1)
        ).squeeze(-1)
        return torch.einsum("bmnd,bmn->bmd", self.basis, s)


def lanczos(
    matvec: Operator,
    start: Tensor,
    max_iter: int,
    *,
    converged: Callable[[LanczosRun], Tensor] | None = None,
    check_every: int = 8,
) -> LanczosRun:
    """Run batched Lanczos from ``start``.

    Args:
        matvec: ``[B, m, d] -> [B, m, d]``, a symmetric operator per sequence: a batched
            operator with ``restrict`` (then only the running samples are computed) or a
            plain callable (applied to every sample at every step).
        start: ``[B, m, d]`` start vectors (normalised here; must be nonzero).
        max_iter: steps at most (capped at d, where the Krylov space is full).
        converged: called every ``check_every`` steps with the run so far; returns a
            ``[B]`` bool tensor, True for the samples that are done. Those samples stop
            (all their sequences) and keep their results from that step on.
        check_every: steps between calls of ``converged``.

    A sequence whose Krylov space becomes invariant (β ≈ 0) stops growing too. A stopped
    sequence's later Lanczos vectors are zero and its tridiagonal is padded with α_1 on
    the diagonal and zero coupling, which leaves its Ritz values, residual estimates and
    quadrature as they were when it stopped (see :meth:`LanczosRun.ritz`).
    """
    B, m, d = start.shape
    k = min(max_iter, d)
    dtype = start.dtype
    Q = start.new_zeros(B, m, k, d)
    alpha = start.new_zeros(B, m, k)
    beta = start.new_zeros(B, m, k)
    q = start / torch.linalg.vector_norm(start, dim=-1, keepdim=True)
    alive = torch.ones(B, m, dtype=torch.bool, device=start.device)
    length = torch.zeros(B, m, dtype=torch.int64, device=start.device)
    scale, residual = start.new_zeros(B, m), torch.zeros_like(start)
    breakdown_tol = 100 * torch.finfo(dtype).eps
    steps = 0
    for j in range(k):
        Q[:, :, j] = q
        length += alive.to(torch.int64)
        w = apply_active(matvec, q, alive.any(-1))
        a = torch.where(alive, (w * q).sum(-1), torch.zeros_like(scale))
        w = _orthogonalise(w, a, Q, beta, j)
        b = torch.linalg.vector_norm(w, dim=-1)
        residual = torch.where(alive[..., None], w, residual)
        scale = torch.maximum(scale, a.abs() + b)
        alive = alive & (b > breakdown_tol * scale.clamp_min(torch.finfo(dtype).tiny))
        alpha[..., j] = a
        # A sequence that stopped for convergence keeps its last β: its residual norm.
        beta[..., j] = torch.where(alive, b, torch.zeros_like(b))
        q = torch.where(alive[..., None], w / b.clamp_min(torch.finfo(dtype).tiny)[..., None], 0)
        steps = j + 1
        if converged is not None and steps % check_every == 0 and steps < k:
            done = converged(_finish(alpha, beta, Q, steps, length, residual))
            alive = alive & ~done[:, None]
            q = torch.where(alive[..., None], q, 0)
        if not bool(alive.any()):
            break
    return _finish(alpha, beta, Q, steps, length, residual)


def _orthogonalise(w: Tensor, a: Tensor, Q: Tensor, beta: Tensor, j: int) -> Tensor:
    """w − α q_j − β_{j−1} q_{j−1}, then reorthogonalised against q_1..q_j (twice)."""
    w = w - a[..., None] * Q[:, :, j]
    if j > 0:
        w = w - beta[..., j - 1, None] * Q[:, :, j - 1]
    basis = Q[:, :, : j + 1]
    for _ in range(2):  # "twice is enough" (Parlett)
        # Batched matmuls on the basis view (einsum copied it: ~2.6× slower on CPU).
        coeff = torch.matmul(basis, w[..., None])  # [B, m, j+1, 1]
        w = w - torch.matmul(coeff.transpose(-1, -2), basis)[..., 0, :]
    return w


def _finish(
    alpha: Tensor, beta: Tensor, Q: Tensor, steps: int, length: Tensor, residual: Tensor
) -> LanczosRun:
    a = alpha[..., :steps].clone()
    b = beta[..., :steps].clone()
    # Pad the steps after a sequence stopped: diagonal α_1, zero coupling (see lanczos()).
    dead = torch.arange(steps, device=length.device) >= length[..., None]
    a = torch.where(dead, a[..., :1].expand_as(a), a)
    return LanczosRun(a, b, Q[:, :, :steps], steps, length.clone(), residual.clone())
