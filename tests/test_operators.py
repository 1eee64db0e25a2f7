"""Every batched operator against its dense float64 twin, on the shared cases."""

import pytest
import torch
import torch.nn.functional as F

from leakaudit.jacobians.autograd import AutogradOperators, module_forward
from leakaudit.jacobians.func import FuncOperators
from leakaudit.jacobians.protocol import SampleOperators
from leakaudit.linalg.operators import CGInverseOperator, DampedOperator, MatmatOperator
from leakaudit.scores.lavp import CosineMatchingHessian, MatchingHessians, l2_matching_hessian
from tests.ground_truth import CASES, Case, compare_matmat, dense_stack, flat_grad_fn, make_case


def _jacobians(case: Case, backend: str) -> SampleOperators:
    if backend == "func":
        return FuncOperators(flat_grad_fn(case.model), case.X, case.Y)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in case.model.named_parameters()}
    buffers = dict(case.model.named_buffers())
    forward = module_forward(case.model, params, buffers)
    return AutogradOperators(forward, list(params.values()), case.X, case.Y, F.cross_entropy)


def _setup(name: str, backend: str = "func"):
    case = make_case(name, n=3)
    ops = _jacobians(case, backend)
    gram = MatmatOperator(ops.gram, len(case.X), ops.dim)
    return case, ops, gram, dense_stack(case)


@pytest.mark.parametrize("backend", ["func", "autograd"])
@pytest.mark.parametrize("name", CASES)
def test_gram_and_l2_matching_hessian(name: str, backend: str) -> None:
    _, _, gram, D = _setup(name, backend)
    A = torch.stack([s.A for s in D])
    compare_matmat(gram, A)
    compare_matmat(l2_matching_hessian(gram), 2 * A)


@pytest.mark.parametrize("name", CASES)
def test_cosine_matching_hessian(name: str) -> None:
    _, ops, gram, D = _setup(name)
    gnorm = ops.grads.norm(dim=1)
    w = ops.jt(ops.grads / gnorm[:, None])
    cosine = CosineMatchingHessian(gram, w, gnorm)
    H_cos = torch.stack([s.H_cos for s in D])
    compare_matmat(cosine, H_cos)
    # The stacked operator of one Lanczos run: JᵀJ on the first sequences, H_c after.
    V = torch.randn(len(D), 3, gram.dim, dtype=torch.float64)
    both = MatchingHessians(gram, cosine, n_l2=2) @ V
    A = torch.stack([s.A for s in D])
    torch.testing.assert_close(both[:, :2], torch.einsum("bij,bmj->bmi", A, V[:, :2]))
    torch.testing.assert_close(both[:, 2:], torch.einsum("bij,bmj->bmi", H_cos, V[:, 2:]))


@pytest.mark.parametrize("name", CASES)
def test_damped_gram_and_its_cg_inverse(name: str) -> None:
    _, _, gram, D = _setup(name)
    A = torch.stack([s.A for s in D])
    eps = 1e-3 * torch.linalg.eigvalsh(A)[:, -1]
    M = A + eps[:, None, None] * torch.eye(gram.dim, dtype=A.dtype)
    damped = DampedOperator(gram, eps)
    compare_matmat(damped, M)
    inverse = CGInverseOperator(damped, tol=1e-13, max_iter=2000)
    compare_matmat(inverse, torch.linalg.inv(M), rtol=1e-7, atol=1e-9)


def test_operators_reject_mismatched_shapes() -> None:
    _, _, gram, _ = _setup("mlp-1ch")
    with pytest.raises(ValueError, match="cannot apply"):
        gram @ torch.zeros(3, 2, gram.dim + 1, dtype=torch.float64)
