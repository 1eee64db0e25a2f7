"""Loss-aware vulnerability proxies (Hong et al. 2023, "Foreseeing Reconstruction Quality
of Gradient Inversion: An Optimization Perspective").

At x = x* the gradient-matching loss is minimal, so only its Gauss–Newton term survives:

* L2:     H₂ = ∇²ₓ‖g(x) − g*‖²       = 2 JᵀJ
* cosine: H_c = ∇²ₓ(1 − cos(g(x), g*)) = Jᵀ(I − uuᵀ)J / ‖g*‖²,   u = g*/‖g*‖

and H_c v = (JᵀJ v − w (wᵀv)) / ‖g*‖² with w = Jᵀu reuses the L2 products. Both are
batched operators (:class:`~leakaudit.linalg.operators.BatchedOperator`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from leakaudit.linalg.lanczos import LanczosRun, Ritz
from leakaudit.linalg.operators import BatchedOperator
from leakaudit.scores import names as N

if TYPE_CHECKING:
    from leakaudit.scores.options import ScoreOptions

#: H₂ = L2_SCALE · JᵀJ. The engine runs Lanczos on JᵀJ itself (the operator I²F needs too)
#: and applies the scale where the L2 score is formed.
L2_SCALE = 2.0

#: score or diagnostic name → ``[B]``
Scores = dict[str, Tensor]

#: (operator, end), e.g. ("l2", "max") → (value [B], winning sequence [B], Ritz column [B])
Ends = dict[tuple[str, str], tuple[Tensor, Tensor, Tensor]]


def record_end(
    scores: Scores,
    diag: Scores,
    options: ScoreOptions,
    op: str,
    end: str,
    value: Tensor,
    residual: Tensor,
    top: Tensor,
) -> None:
    """Score ``lavp_<op>_<end>`` from the eigenvalue ``value`` of JᵀJ (``"l2"``, scaled
    by :data:`L2_SCALE`) or of H_c (``"cos"``), with its relative ``residual`` and the
    certificate both the Lanczos and the dense path use: λ_max converges when its residual
    is ≤ 10·tol; λ_min (PSD operator: 0 ≤ λ_min ≤ θ_min) when its residual is ≤ tol_min or
    θ_min itself is ≤ tol_min·``top`` (|λ_max| of the same operator)."""
    name = N.lavp_name(op, end)
    diag[N.residual_key(name)] = residual
    ok = residual <= 10 * options.tol
    if end == "min":
        ok = (residual <= options.tol_min) | (value <= options.tol_min * top)
    diag[N.converged_key(name)] = ok
    scores[name] = (L2_SCALE if op == "l2" else 1.0) * value


def no_cosine_without_gradient(scores: Scores, diag: Scores, bad: Tensor) -> None:
    """The cosine loss is undefined where g* = 0 (``bad``): its scores are NaN, not
    converged."""
    for end in ("max", "min"):
        name = N.lavp_name("cos", end)
        if name in scores:
            scores[name] = scores[name].masked_fill(bad, float("nan"))
            diag[N.converged_key(name)] &= ~bad


def geometric_mean(scores: Scores, diag: Scores, options: ScoreOptions) -> None:
    """``lavp_gm`` = √(L2 × cosine LAVP) at ``options.gm_end``, converged when both are."""
    if N.LAVP_GM not in options.scores:
        return
    l2e, cose = N.lavp_name("l2", options.gm_end), N.lavp_name("cos", options.gm_end)
    scores[N.LAVP_GM] = (scores[l2e] * scores[cose]).clamp_min(0).sqrt()
    diag[N.converged_key(N.LAVP_GM)] = diag[N.converged_key(l2e)] & diag[N.converged_key(cose)]


def l2_matching_hessian(gram: BatchedOperator) -> BatchedOperator:
    """H₂ = 2 JᵀJ, the Hessian of ‖g(x) − g*‖² at x*, from the Gram operator JᵀJ."""
    return L2_SCALE * gram


class CosineMatchingHessian(BatchedOperator):
    """H_c = Jᵀ(I − uuᵀ)J / ‖g*‖², the Hessian of 1 − cos(g(x), g*) at x*.

    H_c V = (JᵀJ V − w (wᵀV)) / ‖g*‖² reuses the Gram products (:meth:`from_gram`).

    Args:
        gram: JᵀJ.
        w: Jᵀu ``[B, d]`` with u = g*/‖g*‖.
        grad_norm: ‖g*‖ ``[B]``.
    """

    def __init__(self, gram: BatchedOperator, w: Tensor, grad_norm: Tensor) -> None:
        super().__init__(gram.batch, gram.dim)
        self.gram, self.w, self.grad_norm = gram, w, grad_norm

    def from_gram(self, AV: Tensor, V: Tensor) -> Tensor:
        """H_c V given ``AV`` = JᵀJ V, both ``[B, m, d]``."""
        wv = torch.einsum("bd,bmd->bm", self.w, V)
        return (AV - self.w[:, None, :] * wv[..., None]) / self.grad_norm.pow(2)[:, None, None]

    def _matmat(self, V: Tensor) -> Tensor:
        return self.from_gram(self.gram @ V, V)

    def restrict(self, idx: Tensor) -> CosineMatchingHessian:
        return CosineMatchingHessian(self.gram.restrict(idx), self.w[idx], self.grad_norm[idx])


class MatchingHessians(BatchedOperator):
    """The operators one Lanczos run needs, m sequences per sample: JᵀJ (= H₂ / 2) on
    the first ``n_l2`` sequences, H_c on the others. One Gram product serves both.

    Args:
        gram: JᵀJ.
        cosine: H_c, or None when no cosine sequence runs.
        n_l2: how many leading sequences are L2 ones.
    """

    def __init__(
        self, gram: BatchedOperator, cosine: CosineMatchingHessian | None, n_l2: int
    ) -> None:
        super().__init__(gram.batch, gram.dim)
        self.gram, self.cosine, self.n_l2 = gram, cosine, n_l2

    def _matmat(self, V: Tensor) -> Tensor:
        AV = self.gram @ V
        if self.cosine is None:
            return AV
        k = self.n_l2
        return torch.cat([AV[:, :k], self.cosine.from_gram(AV[:, k:], V[:, k:])], dim=1)

    def restrict(self, idx: Tensor) -> MatchingHessians:
        cosine = self.cosine.restrict(idx) if self.cosine is not None else None
        return MatchingHessians(self.gram.restrict(idx), cosine, self.n_l2)

    def columns(self, cols: Tensor) -> MatchingHessians:
        """The operators of the sequences ``cols`` (``[m]`` bool; the L2 ones come first)."""
        cosine = self.cosine if bool(cols[self.n_l2 :].any()) else None
        return MatchingHessians(self.gram, cosine, int(cols[: self.n_l2].sum()))


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


def true_residuals(
    hessians: MatchingHessians, run: LanczosRun, ritz: Ritz, ends: Ends
) -> dict[tuple[str, str], Tensor]:
    """‖H y − θ y‖ ``[B]`` for the chosen Ritz pair of every end, with one extra product.

    The Ritz vectors of every requested end, L2 and cosine, go through one Gram product
    (``[B, r, d]``, r ≤ 4); the cosine ones then get their rank-one correction.

    Args:
        hessians: the operators Lanczos ran on.
        run: the Lanczos run; ``ritz``: its Ritz pairs.
        ends: the chosen pair of each ``(operator, end)`` (:func:`extreme`).
    """
    keys = list(ends)
    Y = torch.stack([ritz_vector(run, ritz, ends[k][1], ends[k][2]) for k in keys], dim=1)
    AY = hessians.gram @ Y
    out = {}
    for i, key in enumerate(keys):
        y, hy = Y[:, i], AY[:, i]
        if key[0] == "cos":
            cosine = hessians.cosine
            assert cosine is not None
            hy = cosine.from_gram(hy[:, None], y[:, None])[:, 0]
        out[key] = torch.linalg.vector_norm(hy - ends[key][0][:, None] * y, dim=1)
    return out
