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

#: Steps the basis has room for at first; it doubles as runs go on.
_FIRST_STEPS = 16


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

    def select(self, rows: Tensor, *, basis: bool = True) -> LanczosRun:
        """The run of the samples ``rows`` (``[b]`` int64); with ``basis=False`` its
        basis is left out (``[b, m, 0, d]``: coefficients only, no copy of the vectors)."""
        Q = self.basis[rows] if basis else self.basis[rows, :, :0]
        return LanczosRun(
            self.alpha[rows], self.beta[rows], Q, self.steps, self.length[rows],
            self.residual[rows],
        )  # fmt: skip

    def truncated(self, steps: Tensor) -> LanczosRun:
        """The run as it was when each sample had taken ``steps`` ``[B]`` steps
        (coefficients only: the basis is left out); sequences keep their own, shorter,
        lengths."""
        length = torch.minimum(self.length, steps[:, None].clamp_min(0))
        dead = torch.arange(self.steps, device=length.device) >= length[..., None]
        alpha = torch.where(dead, self.alpha[..., :1].expand_as(self.alpha), self.alpha)
        # β at the new last step is the residual norm the sequence had then: kept.
        beta = torch.where(dead, 0, self.beta)
        return LanczosRun(
            alpha, beta, self.basis[:, :, :0], self.steps, length, self.residual[..., :0]
        )

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
    width: int | None = None,
    on_done: Callable[[Tensor], None] | None = None,
) -> LanczosRun:
    """Run batched Lanczos from ``start``, at most ``width`` samples at a time.

    Args:
        matvec: ``[B, m, d] -> [B, m, d]``, a symmetric operator per sequence: a batched
            operator with ``restrict`` (then only the running samples are computed) or a
            plain callable (applied to every sample at every step, zero rows for the
            samples not running).
        start: ``[B, m, d]`` start vectors (normalised here; must be nonzero).
        max_iter: steps at most (capped at d, where the Krylov space is full).
        converged: called with the run of the samples that reach a check (every
            ``check_every`` of *their own* steps: :meth:`LanczosRun.select`, coefficients
            only); returns a bool tensor, ``[b]`` (True: the sample is done, all its
            sequences stop) or ``[b, m]`` (True: that sequence is done and stops). A
            stopped sequence keeps its results; a sample stops with its last sequence.
        check_every: steps between calls of ``converged``.
        width: samples running at once (default: all B). The others wait; when a sample
            stops, the next waiting one takes its slot, so the batched product stays full
            while slow samples finish and one slow sample costs only its own steps.
        on_done: called with a ``[B]`` bool mask of the samples that stopped at a step
            (converged, broken down, or at ``max_iter``), as they stop.

    A sequence whose Krylov space becomes invariant (β ≈ 0) stops growing too. A stopped
    sequence's later Lanczos vectors are zero and its tridiagonal is padded with α_1 on
    the diagonal and zero coupling, which leaves its Ritz values, residual estimates and
    quadrature as they were when it stopped (see :meth:`LanczosRun.ritz`). Each sample's
    run depends on its own operator and start only: not on ``width`` nor on which
    samples share its steps (up to the rounding of the batched product).
    """
    B, _, d = start.shape
    state = _Slots(start, min(max_iter, d), B if width is None else max(1, min(width, B)))
    while True:
        rows = state.running.nonzero()[:, 0]
        if not rows.numel():
            break
        state.step(matvec, rows)
        finished = state.running & ((state.pos >= state.k) | ~state.alive.any(-1))
        check = state.running & ~finished & (state.pos % check_every == 0)
        if converged is not None and bool(check.any()):
            at = check.nonzero()[:, 0]
            done = converged(state.run().select(at, basis=False))
            state.alive[at] &= ~(done[:, None] if done.ndim == 1 else done)
            finished |= state.running & ~state.alive.any(-1)
        state.stop(finished)
        if on_done is not None and bool(finished.any()):
            on_done(finished)
    return state.run()


class _Slots:
    """The state of :func:`lanczos`: every sample's basis and coefficients, its own step
    count ``pos``, and which samples run now (``running``) or still wait."""

    def __init__(self, start: Tensor, k: int, width: int) -> None:
        B, m, d = start.shape
        self.k, self.width = k, width
        # The basis grows as steps are taken (most runs stop far below k: zeroing a
        # basis of k steps up front cost ~3 % of a λ_max scan in page faults).
        self.Q = start.new_zeros(B, m, min(k, _FIRST_STEPS), d)
        self.alpha, self.beta = start.new_zeros(B, m, k), start.new_zeros(B, m, k)
        self.q = start / torch.linalg.vector_norm(start, dim=-1, keepdim=True)
        self.alive = torch.ones(B, m, dtype=torch.bool, device=start.device)
        self.length = torch.zeros(B, m, dtype=torch.int64, device=start.device)
        self.pos = torch.zeros(B, dtype=torch.int64, device=start.device)
        self.scale, self.residual = start.new_zeros(B, m), torch.zeros_like(start)
        self.running = torch.arange(B, device=start.device) < width
        self.waiting = ~self.running
        self.tol = 100 * torch.finfo(start.dtype).eps

    def step(self, matvec: Operator, rows: Tensor) -> None:
        """One Lanczos step for the running samples ``rows``, each at its own step."""
        tiny = torch.finfo(self.q.dtype).tiny
        seqs = torch.arange(self.q.shape[1], device=rows.device)
        p, alive, q = self.pos[rows], self.alive[rows], self.q[rows]
        self._reserve(int(p.max()) + 1)
        self.Q[rows[:, None], seqs, p[:, None]] = q
        self.length[rows] += alive.to(torch.int64)
        V = torch.where(self.running[:, None, None], self.q, 0)
        w = apply_active(matvec, V, self.running, self.alive)[rows]
        a = torch.where(alive, (w * q).sum(-1), 0)
        w = w - a[..., None] * q
        before = (p - 1).clamp_min(0)
        b_prev = torch.where(p[:, None] > 0, self.beta[rows[:, None], seqs, before[:, None]], 0)
        w = w - b_prev[..., None] * self.Q[rows[:, None], seqs, before[:, None]]
        J, B = int(p.max()) + 1, self.Q.shape[0]
        if rows.numel() == B:
            w = _reorthogonalise(w, self.Q[:, :, :J])
        elif 2 * rows.numel() >= B:  # the whole basis (a view) beats copying most of it
            W = w.new_zeros(B, *w.shape[1:])
            W[rows] = w
            w = _reorthogonalise(W, self.Q[:, :, :J])[rows]
        else:
            w = _reorthogonalise(w, self.Q[rows, :, :J])
        b = torch.linalg.vector_norm(w, dim=-1)
        self.residual[rows] = torch.where(alive[..., None], w, self.residual[rows])
        scale = torch.maximum(self.scale[rows], a.abs() + b)
        self.scale[rows] = scale
        alive = alive & (b > self.tol * scale.clamp_min(tiny))
        self.alpha[rows[:, None], seqs, p[:, None]] = a
        # A sequence that stopped for convergence keeps its last β: its residual norm.
        self.beta[rows[:, None], seqs, p[:, None]] = torch.where(alive, b, 0)
        self.q[rows] = torch.where(alive[..., None], w / b.clamp_min(tiny)[..., None], 0)
        self.alive[rows] = alive
        self.pos[rows] += 1

    def _reserve(self, steps: int) -> None:
        """Room in the basis for ``steps`` steps (capacity doubles, capped at k)."""
        have = self.Q.shape[2]
        if steps > have:
            grown = self.Q.new_zeros(
                *self.Q.shape[:2], min(self.k, max(steps, 2 * have)), self.Q.shape[3]
            )
            grown[:, :, :have] = self.Q
            self.Q = grown

    def stop(self, finished: Tensor) -> None:
        """Freeze the samples of ``finished`` (``[B]`` bool) and start waiting ones."""
        self.alive &= ~finished[:, None]
        self.q = torch.where(self.alive[..., None], self.q, 0)
        self.running &= ~finished
        free = self.width - int(self.running.sum())
        if free > 0 and bool(self.waiting.any()):
            nxt = self.waiting.nonzero()[:free, 0]
            self.running[nxt], self.waiting[nxt] = True, False

    def run(self) -> LanczosRun:
        return _finish(
            self.alpha, self.beta, self.Q, int(self.pos.max()), self.length, self.residual
        )


def _reorthogonalise(w: Tensor, basis: Tensor) -> Tensor:
    """w reorthogonalised against the Lanczos vectors ``basis`` ``[b, m, j, d]`` (zero
    columns past a sequence's own step are harmless), twice ("twice is enough", Parlett)."""
    for _ in range(2):
        # Batched matmuls on the basis (einsum copied it: ~2.6× slower on CPU).
        coeff = torch.matmul(basis, w[..., None])  # [b, m, j, 1]
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
