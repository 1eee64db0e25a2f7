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
    b, n = x0.shape
    dev, dt = x0.device, x0.dtype
    x = x0.detach().clone()
    loss, g = _value_and_grad(f, x)
    evaluations = 1
    s_hist = torch.zeros(history, b, n, device=dev, dtype=dt)
    y_hist = torch.zeros(history, b, n, device=dev, dtype=dt)
    rho = torch.zeros(history, b, device=dev, dtype=dt)
    valid = torch.zeros(history, b, dtype=torch.bool, device=dev)
    h_diag = torch.ones(b, device=dev, dtype=dt)
    fresh = torch.ones(b, dtype=torch.bool, device=dev)  # no step taken yet
    active = g.abs().amax(dim=1) > tolerance_grad
    ptr, filled, done = 0, 0, 0

    for it in range(iterations):
        if not bool(active.any()):
            break
        # Two-loop recursion, every scalar per sample; invalid pairs contribute nothing.
        order = [(ptr - 1 - i) % history for i in range(filled)]
        q = g.clone()
        alphas: dict[int, Tensor] = {}
        for i in order:
            a = torch.where(valid[i], rho[i] * (s_hist[i] * q).sum(1), 0.0)
            alphas[i] = a
            q -= a[:, None] * y_hist[i]
        r = q * h_diag[:, None]
        for i in reversed(order):
            beta = torch.where(valid[i], rho[i] * (y_hist[i] * r).sum(1), 0.0)
            r += s_hist[i] * (alphas[i] - beta)[:, None]
        d = -r
        gd = (g * d).sum(1)
        bad = ~(gd < 0) | ~torch.isfinite(gd)  # not a descent direction: restart
        if bool(bad.any()):
            d = torch.where(bad[:, None], -g, d)
            gd = torch.where(bad, -(g * g).sum(1), gd)
            valid[:, bad] = False
            h_diag = torch.where(bad, torch.ones_like(h_diag), h_diag)
        t = torch.where(fresh, (1.0 / g.abs().sum(1).clamp_min(1e-30)).clamp_max(1.0) * lr, lr)
        t = torch.where(active, t, 0.0)

        # Per-sample backtracking: samples that satisfy Armijo keep their evaluation.
        new_x, new_loss, new_g = x.clone(), loss.clone(), g.clone()
        pending = active.clone()
        for _ in range(max_backtracks + 1 if line_search else 1):
            cand = x + t[:, None] * d
            c_loss, c_g = _value_and_grad(f, cand)
            evaluations += 1
            ok = torch.isfinite(c_loss) & torch.isfinite(c_g).all(1)
            if line_search:
                ok &= c_loss <= loss + 1e-4 * t * gd
            take = pending & ok
            new_x[take], new_loss[take], new_g[take] = cand[take], c_loss[take], c_g[take]
            pending &= ~take
            if not bool(pending.any()):
                break
            t = torch.where(pending, t * 0.5, t)
        failed = pending  # no acceptable step: stay, forget the curvature pairs
        valid[:, failed] = False
        h_diag = torch.where(failed, torch.ones_like(h_diag), h_diag)

        moved = active & ~failed
        s, y = new_x - x, new_g - g
        ys, yy = (y * s).sum(1), (y * y).sum(1)
        store = moved & (ys > 1e-10)
        s_hist[ptr], y_hist[ptr] = s, y
        rho[ptr] = torch.where(store, 1.0 / ys.clamp_min(1e-30), 0.0)
        valid[ptr] = store
        h_diag = torch.where(store, ys / yy.clamp_min(1e-30), h_diag)
        ptr, filled = (ptr + 1) % history, min(filled + 1, history)

        step = s.abs().amax(1)
        change = (new_loss - loss).abs()
        x, g = new_x, new_g
        loss = new_loss
        fresh = (fresh & ~moved) | failed
        converged = (g.abs().amax(1) <= tolerance_grad) | (
            moved & ((step <= tolerance_change) | (change < tolerance_change))
        )
        active &= ~converged
        done = it + 1
        if progress is not None:
            progress(done, iterations)
    if progress is not None and done < iterations:
        progress(iterations, iterations)
    return LBFGSResult(x=x, loss=loss, iterations=done, evaluations=evaluations)
