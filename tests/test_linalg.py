"""Batched Lanczos, CG and trace estimators against dense linear algebra.

The symmetric matrices are Gram matrices of real data (scikit-learn digits), whose
spectra decay like the Jacobian Gram matrices the engine meets.
"""

import pytest
import torch

from leakaudit.linalg.cg import conjugate_gradient
from leakaudit.linalg.lanczos import lanczos
from leakaudit.linalg.trace import mean_and_se, probe_vectors, quadrature
from tests.ground_truth import digits


def digit_grams(n_mats: int = 3) -> torch.Tensor:
    """[n, 64, 64] Gram matrices of disjoint blocks of 40 digit images."""
    X, _ = digits(40 * n_mats, 8)
    X = X.reshape(n_mats, 40, 64)
    return X.transpose(1, 2) @ X / 40


def test_lanczos_extremes_match_eigvalsh_for_batched_operators() -> None:
    A = digit_grams(3)  # one operator per "sample"
    start = probe_vectors(torch.arange(3), 64, 2, seed=0, purpose=1, dtype=A.dtype)

    def mv(V):  # [B, m, d]
        return torch.einsum("bij,bmj->bmi", A, V)

    run = lanczos(mv, start, 64)
    ritz = run.ritz()
    ev = torch.linalg.eigvalsh(A)
    for b in range(3):
        for s in range(2):
            assert ritz.values[b, s, -1] == pytest.approx(float(ev[b, -1]), rel=1e-10)
            assert abs(float(ritz.values[b, s, 0] - ev[b, 0])) <= 1e-10 * float(ev[b, -1])
    # The Ritz residual estimate agrees with the true residual of the Ritz vector.
    which = torch.full((3, 2), run.steps - 1)
    Y = run.ritz_vectors(ritz, which)
    true = torch.linalg.vector_norm(mv(Y) - ritz.values[..., -1:] * Y, dim=-1)
    assert torch.all(true <= 1e-8 * ev[:, -1:])


def test_lanczos_few_steps_converge_to_lambda_max_first() -> None:
    A = digit_grams(1)
    start = probe_vectors(torch.arange(1), 64, 1, seed=0, purpose=1, dtype=A.dtype)
    run = lanczos(lambda V: torch.einsum("bij,bmj->bmi", A, V), start, 20)
    ev = torch.linalg.eigvalsh(A)[0]
    ritz = run.ritz()
    assert run.steps == 20
    assert float(ritz.values[0, 0, -1]) == pytest.approx(float(ev[-1]), rel=1e-8)
    # Ritz values interlace: inside the spectrum.
    assert float(ritz.values[0, 0, 0]) >= float(ev[0]) - 1e-12


def test_lanczos_breakdown_on_invariant_subspace_is_exact() -> None:
    A = digit_grams(1)[0]
    ev, U = torch.linalg.eigh(A)
    start = (U[:, -1] + U[:, -2] + U[:, 5]).reshape(1, 1, 64)  # spans 3 eigenvectors
    run = lanczos(lambda V: V @ A, start, 64)
    ritz = run.ritz()
    # Three genuine steps, the rest padded: extremes and quadrature are unaffected.
    assert float(ritz.values[0, 0, -1]) == pytest.approx(float(ev[-1]), rel=1e-10)
    assert float(ritz.values[0, 0, 0]) == pytest.approx(float(ev[5]), rel=1e-8)
    q = quadrature(ritz.values, ritz.first, 1, lambda t: t**2)
    z = start[0, 0] / start[0, 0].norm()
    assert float(q) == pytest.approx(float(z @ A @ A @ z), rel=1e-10)


def test_slq_with_basis_probes_is_an_exact_trace() -> None:
    A = digit_grams(2)
    d = 64
    Z = probe_vectors(torch.arange(2), d, d, seed=0, purpose=3, dtype=A.dtype)
    run = lanczos(lambda V: torch.einsum("bij,bmj->bmi", A, V), Z, d)
    ritz = run.ritz()
    eps = 1e-3 * torch.linalg.eigvalsh(A)[:, -1]

    def f(t):
        return t.clamp_min(0) / (t + eps[:, None, None]) ** 2

    est, se = mean_and_se(quadrature(ritz.values, ritz.first, d, f), exact=True)
    for b in range(2):
        M = torch.linalg.solve(
            A[b] + eps[b] * torch.eye(d, dtype=A.dtype), torch.eye(d, dtype=A.dtype)
        )
        truth = torch.trace(M @ M @ A[b])
        assert float(est[b]) == pytest.approx(float(truth), rel=1e-8)
    assert torch.all(se == 0)


def test_hutchinson_error_shrinks_and_is_covered_by_its_standard_error() -> None:
    A = digit_grams(1)[0]
    truth = float(torch.trace(A))
    errors = []
    for n in (4, 16, 63):  # n >= d = 64 would switch to the exact basis
        Z = probe_vectors(torch.arange(1), 64, n, seed=1, purpose=3, dtype=A.dtype)[0]
        samples = torch.einsum("nd,de,ne->n", Z, A, Z)
        est, se = mean_and_se(samples[None], exact=False)
        errors.append(abs(float(est) - truth))
        assert abs(float(est) - truth) <= 4 * float(se)
    assert errors[-1] < errors[0]


def test_cg_solves_damped_systems_like_linalg_solve() -> None:
    A = digit_grams(3)
    eps = 1e-3 * torch.linalg.eigvalsh(A)[:, -1]
    X, _ = digits(3, 8)
    rhs = X.reshape(3, 64)

    def mv(v):
        return torch.einsum("bij,bj->bi", A, v) + eps[:, None] * v

    res = conjugate_gradient(mv, rhs, tol=1e-10, max_iter=1000)
    assert bool(res.converged.all())
    for b in range(3):
        truth = torch.linalg.solve(A[b] + eps[b] * torch.eye(64, dtype=A.dtype), rhs[b])
        assert torch.allclose(
            res.solution[b], truth, rtol=1e-7, atol=1e-9 * float(truth.abs().max())
        )


def test_a_non_finite_operator_spoils_only_its_own_sample() -> None:
    A = digit_grams(3)
    start = probe_vectors(torch.arange(3), 64, 1, seed=0, purpose=1, dtype=A.dtype)

    def mv(V):
        out = torch.einsum("bij,bmj->bmi", A, V)
        out[1] = float("nan")  # sample 1's products are NaN (e.g. a NaN gradient)
        return out

    ritz = lanczos(mv, start, 16).ritz()
    assert torch.isnan(ritz.values[1]).all()
    ev = torch.linalg.eigvalsh(A)
    for b in (0, 2):
        assert torch.isfinite(ritz.values[b]).all()
        assert ritz.values[b, 0, -1] == pytest.approx(float(ev[b, -1]), rel=1e-6)
