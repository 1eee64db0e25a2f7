"""SPEC closed forms: the matching losses' Hessians at x* equal 2JᵀJ and Jᵀ(I−uuᵀ)J/‖g*‖²."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import hessian

from tests.ground_truth import dense, flat_grad_fn, make_case


@pytest.mark.parametrize("name", ["lenet-1ch", "relubn-3ch", "mlp-1ch"])
def test_matching_loss_hessians_equal_closed_forms(name: str) -> None:
    case = make_case(name, n=1)
    x, y = case.X[0], case.Y[0]
    g_of = flat_grad_fn(case.model)
    g_star = g_of(x, y).detach()
    shape = x.shape

    def l2(v: torch.Tensor) -> torch.Tensor:
        return (g_of(v.reshape(shape), y) - g_star).pow(2).sum()

    def cos(v: torch.Tensor) -> torch.Tensor:
        return 1 - F.cosine_similarity(g_of(v.reshape(shape), y), g_star, dim=0)

    D = dense(case.model, x, y)
    H2 = hessian(l2)(x.reshape(-1))
    Hc = hessian(cos)(x.reshape(-1))
    scale = H2.abs().max()
    assert torch.allclose(H2, 2 * D.A, atol=1e-10 * scale, rtol=0)
    assert torch.allclose(Hc, D.H_cos, atol=1e-10 * Hc.abs().max(), rtol=0)
    # The closed forms are not trivially equal to each other: the projection matters.
    assert not torch.allclose(D.H_cos * D.g.norm() ** 2, D.A, rtol=1e-3)
