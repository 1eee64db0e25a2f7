"""Active-set products: a sample that is done costs no more Jacobian products.

Lanczos and CG compute each step's product for the samples still running only (through
the operators' ``restrict``); the frozen samples keep exactly what they had, and a scan's
product count is the sum of its samples' own costs, whatever the chunk size.
"""

from __future__ import annotations

import torch

from leakaudit.defenses import GaussianNoise
from leakaudit.linalg.cg import conjugate_gradient
from leakaudit.linalg.lanczos import lanczos
from leakaudit.linalg.operators import DampedOperator, MatmatOperator
from leakaudit.scores.engine import score_samples
from leakaudit.scores.names import ALL_SCORES
from leakaudit.scores.options import ScoreOptions
from tests.ground_truth import digits
from tests.security.test_chunking import _demo_model_and_digits
from tests.test_linalg import digit_grams


class _Counted:
    """Dense per-sample matrices as a restrictable operator that counts sample-products."""

    def __init__(self, A: torch.Tensor) -> None:
        self.A, self.rows = A, 0

    def product(self, idx: torch.Tensor):
        def mv(V: torch.Tensor) -> torch.Tensor:
            self.rows += V.shape[0] * V.shape[1]
            return torch.einsum("bij,bmj->bmi", self.A[idx], V)

        return mv

    def operator(self) -> MatmatOperator:
        everyone = torch.arange(self.A.shape[0])
        return MatmatOperator(self.product(everyone), *self.A.shape[:2], self.product)


def _mixed_operators() -> torch.Tensor:
    A = digit_grams(3)
    few, _ = digits(3, 8)
    few = few.reshape(3, 64).double()
    A[1] = few.T @ few / 3  # rank 3: settles within a few steps
    return A


def settled_to(tol: float):
    """A convergence test: the first sequence's top Ritz value has a residual estimate
    below ``tol`` of it."""

    def settled(run):
        ritz = run.ritz()
        return ritz.residual_bound[:, 0, -1] <= tol * ritz.values[:, 0, -1].abs()

    return settled


_settled = settled_to(1e-10)


def test_lanczos_computes_running_samples_only_and_keeps_frozen_ones() -> None:
    A = _mixed_operators()
    start = torch.ones(3, 2, 64, dtype=A.dtype) + torch.linspace(0, 1, 64, dtype=A.dtype)
    counted = _Counted(A)
    active = lanczos(counted.operator(), start, 64, converged=_settled, check_every=4)
    plain = lanczos(counted.product(torch.arange(3)), start, 64, converged=_settled, check_every=4)
    steps = active.length.max(-1).values
    assert steps.unique().numel() > 1, steps
    # Each sample paid for its own steps only (m = 2 vectors a step) ...
    assert counted.rows - 2 * 3 * plain.steps == 2 * int(steps.sum())
    # ... and got the same run: the frozen samples bit for bit, the others to rounding.
    assert torch.equal(active.length, plain.length)
    for b in range(3):
        n = int(steps[b])
        same = torch.equal if n < plain.steps else torch.allclose
        assert same(active.alpha[b, :, :n], plain.alpha[b, :, :n])
        assert same(active.beta[b, :, :n], plain.beta[b, :, :n])


def test_cg_computes_samples_with_running_rows_only() -> None:
    A = digit_grams(2)
    A[1] = A[1] + 10.0 * torch.eye(64, dtype=A.dtype)  # well conditioned: stops early
    X, _ = digits(2, 8)
    rhs = X.reshape(2, 1, 64).double()
    counted = _Counted(A)
    damped = DampedOperator(counted.operator(), torch.full((2,), 1e-2, dtype=A.dtype))
    res = conjugate_gradient(damped, rhs, tol=1e-8)
    its = res.iterations[:, 0]
    assert its[1] < its[0], its
    assert counted.rows == int(its.sum())
    plain = conjugate_gradient(lambda v: damped @ v, rhs, tol=1e-8)
    assert torch.equal(plain.iterations, res.iterations)
    assert torch.allclose(plain.solution, res.solution, rtol=1e-12, atol=0)


def test_a_scans_products_do_not_depend_on_the_chunk_size() -> None:
    # Demo positions 2, 9, 12, 16, 17 settle after 16 Lanczos steps, 0, 1, 3, 4 after 24.
    model, X, Y = _demo_model_and_digits([0, 2, 9, 1, 12, 16, 3, 17, 4])
    base = dict(  # the Lanczos path (d = 64 would otherwise be scored densely)
        dtype=torch.float64, scores=ALL_SCORES, defense=GaussianNoise(0.01), dense_max_dim=0
    )
    runs = {s: score_samples(model, (X, Y), ScoreOptions(chunk_size=s, **base)) for s in (1, 9)}
    assert runs[1].products > 0
    assert runs[9].products == runs[1].products
    # Per sample: J·v + Jᵀ·u per Lanczos vector (9 sequences, each stopping when its
    # operator's ends have settled), Jᵀu for the cosine operator, and 4 Ritz-pair
    # residual checks (a Gram product each).
    steps, vectors = runs[1].diagnostics["lanczos_steps"], runs[1].diagnostics["lanczos_vectors"]
    assert runs[1].products == int((2 * vectors + 1 + 2 * 4).sum())
    assert bool((vectors < 9 * steps).any())  # some cosine sequences stopped first
    assert bool((vectors > 8 * steps).all())  # (the L2 ones set the pace here)


def test_progress_reports_samples_as_they_finish() -> None:
    # One chunk: the five quick samples are reported when their Lanczos runs stop
    # (16 steps), the four slow ones when theirs do (24 steps).
    model, X, Y = _demo_model_and_digits([0, 2, 9, 1, 12, 16, 3, 17, 4])
    seen: list[int] = []
    opts = ScoreOptions(
        dtype=torch.float64, scores=ALL_SCORES, defense=GaussianNoise(0.01), dense_max_dim=0
    )
    score_samples(model, (X, Y), opts, progress=seen.append)
    assert seen == [5, 4]
