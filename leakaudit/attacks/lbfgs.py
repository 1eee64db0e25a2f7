"""L-BFGS over a batch of independent problems, each with its own curvature history.

DLG (Zhu et al. 2019) and iDLG (Zhao et al. 2020) minimise the L2 matching loss with
``torch.optim.LBFGS`` (history 100, step 1, no line search). Running that optimiser on
the sum of many samples' losses would couple the samples: the two-loop recursion takes
inner products over the joint vector, so each sample's step would depend on the others.
Here every scalar of the recursion (ρ, α, β, the initial Hessian scale, the step
length) is per sample, so attacking B samples at once gives each sample the iterates it
would get alone, up to floating-point reduction order.

A backtracking Armijo line search per sample (on by default) keeps a sample whose full
step would increase its loss from diverging; with ``line_search=False`` the step is
the reference's fixed ``lr``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

#: f(x [B, n]) -> per-sample losses [B]; differentiable in x.
BatchObjective = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class LBFGSResult:
    """The end of a batched L-BFGS run.

    Attributes:
        x: ``[B, n]`` final iterates.
        loss: ``[B]`` their losses.
        iterations: L-BFGS iterations run (the longest over samples).
        evaluations: objective evaluations (each one forward/backward of the batch).
    """

    x: Tensor
    loss: Tensor
    iterations: int
    evaluations: int


def _value_and_grad(f: BatchObjective, x: Tensor) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        loss = f(x)
        (g,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), g.detach()


@dataclass
class _History:
    """Each sample's curvature pairs (a ring buffer) and initial Hessian scale.

    Attributes:
        s: ``[m, B, n]`` steps; ``y``: ``[m, B, n]`` gradient changes.
        rho: ``[m, B]`` 1 / yᵀs; ``valid``: ``[m, B]`` which pairs count.
        h_diag: ``[B]`` the initial inverse-Hessian scale yᵀs / yᵀy.
        ptr: the next slot; ``filled``: slots written so far (at most m).
    """

    s: Tensor
    y: Tensor
    rho: Tensor
    valid: Tensor
    h_diag: Tensor
    ptr: int = 0
    filled: int = 0

    @classmethod
    def empty(cls, size: int, like: Tensor) -> _History:
        """No pairs yet, for ``like``'s ``[B, n]`` shape, device and dtype."""
        b, n = like.shape
        dev, dt = like.device, like.dtype
        return cls(
            s=torch.zeros(size, b, n, device=dev, dtype=dt),
            y=torch.zeros(size, b, n, device=dev, dtype=dt),
            rho=torch.zeros(size, b, device=dev, dtype=dt),
            valid=torch.zeros(size, b, dtype=torch.bool, device=dev),
            h_diag=torch.ones(b, device=dev, dtype=dt),
        )

    def direction(self, g: Tensor) -> Tensor:
        """−H g by the two-loop recursion, every scalar per sample; invalid pairs add nothing."""
        size = self.s.shape[0]
        order = [(self.ptr - 1 - i) % size for i in range(self.filled)]
        q = g.clone()
        alphas: dict[int, Tensor] = {}
        for i in order:
            a = torch.where(self.valid[i], self.rho[i] * (self.s[i] * q).sum(1), 0.0)
            alphas[i] = a
            q -= a[:, None] * self.y[i]
        r = q * self.h_diag[:, None]
        for i in reversed(order):
            beta = torch.where(self.valid[i], self.rho[i] * (self.y[i] * r).sum(1), 0.0)
            r += self.s[i] * (alphas[i] - beta)[:, None]
        return -r

    def forget(self, which: Tensor) -> None:
        """Drop the pairs of the samples ``which`` ``[B]`` and reset their scale."""
        self.valid[:, which] = False
        self.h_diag = torch.where(which, torch.ones_like(self.h_diag), self.h_diag)

    def push(self, s: Tensor, y: Tensor, moved: Tensor) -> None:
        """Store the pair ``(s, y)``; it counts for moved samples with positive curvature."""
        ys, yy = (y * s).sum(1), (y * y).sum(1)
        store = moved & (ys > 1e-10)
        self.s[self.ptr], self.y[self.ptr] = s, y
        self.rho[self.ptr] = torch.where(store, 1.0 / ys.clamp_min(1e-30), 0.0)
        self.valid[self.ptr] = store
        self.h_diag = torch.where(store, ys / yy.clamp_min(1e-30), self.h_diag)
        size = self.s.shape[0]
        self.ptr, self.filled = (self.ptr + 1) % size, min(self.filled + 1, size)


@dataclass
class _Point:
    """Each sample's iterate ``x`` ``[B, n]``, its loss ``[B]`` and gradient ``[B, n]``."""

    x: Tensor
    loss: Tensor
    g: Tensor

    def clone(self) -> _Point:
        return _Point(self.x.clone(), self.loss.clone(), self.g.clone())


def _descent(history: _History, g: Tensor) -> tuple[Tensor, Tensor]:
    """The L-BFGS direction ``[B, n]`` and its slope gᵀd ``[B]``; a sample whose direction
    does not descend restarts from −g (its history forgotten)."""
    d = history.direction(g)
    gd = (g * d).sum(1)
    bad = ~(gd < 0) | ~torch.isfinite(gd)
    if bool(bad.any()):
        d = torch.where(bad[:, None], -g, d)
        gd = torch.where(bad, -(g * g).sum(1), gd)
        history.forget(bad)
    return d, gd


def _line_search(
    f: BatchObjective,
    at: _Point,
    d: Tensor,
    gd: Tensor,
    t: Tensor,
    active: Tensor,
    tries: int,
    armijo: bool,
) -> tuple[_Point, Tensor, int]:
    """Per-sample backtracking from ``at`` along ``d``: a sample that satisfies Armijo keeps
    its evaluation, the others halve their step, at most ``tries`` evaluations.

    Returns:
        The new point (unmoved where no step was accepted), the ``[B]`` samples that
        found no acceptable step, and the evaluations used.
    """
    new = at.clone()
    pending = active.clone()
    evaluations = 0
    for _ in range(tries):
        cand = at.x + t[:, None] * d
        c_loss, c_g = _value_and_grad(f, cand)
        evaluations += 1
        ok = torch.isfinite(c_loss) & torch.isfinite(c_g).all(1)
        if armijo:
            ok &= c_loss <= at.loss + 1e-4 * t * gd
        take = pending & ok
        new.x[take], new.loss[take], new.g[take] = cand[take], c_loss[take], c_g[take]
        pending &= ~take
        if not bool(pending.any()):
            break
        t = torch.where(pending, t * 0.5, t)
    return new, pending, evaluations


def _converged(
    old: _Point, new: _Point, moved: Tensor, tolerance_grad: float, tolerance_change: float
) -> Tensor:
    """``[B]``: the gradient at ``new`` is flat, or a sample that moved barely changed."""
    step, change = (new.x - old.x).abs().amax(1), (new.loss - old.loss).abs()
    small = (step <= tolerance_change) | (change < tolerance_change)
    return (new.g.abs().amax(1) <= tolerance_grad) | (moved & small)


def lbfgs_minimize(
    f: BatchObjective,
    x0: Tensor,
    *,
    iterations: int,
    lr: float = 1.0,
    history: int = 100,
    line_search: bool = True,
    max_backtracks: int = 10,
    tolerance_grad: float = 1e-7,
    tolerance_change: float = 1e-9,
    progress: Callable[[int, int], None] | None = None,
) -> LBFGSResult:
    """Minimise ``f`` for each row of ``x0`` independently.

    Args:
        f: per-sample losses ``[B]`` of ``[B, n]``; sample b's loss must depend on row
            b only.
        x0: ``[B, n]`` starting points.
        iterations: L-BFGS iterations at most.
        lr: step length (the first step is scaled by ``min(1, 1/‖g‖₁)`` as in torch).
        history: curvature pairs kept per sample.
        line_search: backtrack (halving) until the Armijo condition holds.
        max_backtracks: halvings at most; a sample that still fails keeps its point and
            forgets its history.
        tolerance_grad: a sample stops when ``max|g| ≤`` this.
        tolerance_change: a sample stops when its step or loss change is below this.
        progress: called as ``progress(done, iterations)`` after each iteration.

    Returns:
        The final iterates and losses.
    """
    x = x0.detach().clone()
    at = _Point(x, *_value_and_grad(f, x))
    evaluations = 1
    pairs = _History.empty(history, x)
    fresh = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)  # no step taken yet
    active = at.g.abs().amax(dim=1) > tolerance_grad
    tries = max_backtracks + 1 if line_search else 1
    done = 0
    for it in range(iterations):
        if not bool(active.any()):
            break
        d, gd = _descent(pairs, at.g)
        first = (1.0 / at.g.abs().sum(1).clamp_min(1e-30)).clamp_max(1.0) * lr
        t = torch.where(active, torch.where(fresh, first, lr), 0.0)
        new, failed, used = _line_search(f, at, d, gd, t, active, tries, line_search)
        evaluations += used
        pairs.forget(failed)  # no acceptable step: stay, forget the curvature pairs
        moved = active & ~failed
        pairs.push(new.x - at.x, new.g - at.g, moved)
        active &= ~_converged(at, new, moved, tolerance_grad, tolerance_change)
        at, fresh = new, (fresh & ~moved) | failed
        done = it + 1
        if progress is not None:
            progress(done, iterations)
    if progress is not None and done < iterations:
        progress(iterations, iterations)
    return LBFGSResult(x=at.x, loss=at.loss, iterations=done, evaluations=evaluations)
