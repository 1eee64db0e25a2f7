"""The retained linearisation behind the torch.func products, against dense Jacobians.

Every product (Jᵀu, J·v for one and several vectors, JᵀJ·v, ‖J·v‖²) is compared with the
dense float64 Jacobian of each sample (``jacrev``), for the engine's gradient map (per
parameter tensor, :meth:`PlainGradient.parts`) and for a plain flat one; restricted views
must give the same numbers whether they compute through the chunk's retained graph
(zero-padded) or through a graph of their own, and build graphs only when the rule says.
"""

import pytest
import torch
import torch.nn.functional as F

import leakaudit.jacobians.func as func
from leakaudit.jacobians.func import FuncOperators, make_flat_grad
from tests.ground_truth import CASES, dense_stack, flat_grad_fn, make_case


def _engine_grad(model: torch.nn.Module) -> func.PlainGradient:
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    g = make_flat_grad(model, params, buffers, F.cross_entropy)
    assert isinstance(g, func.PlainGradient)
    return g


def _check_products(ops: FuncOperators, Js: list[torch.Tensor], seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    B, (P, d) = len(Js), Js[0].shape
    J = torch.stack(Js)  # [B, P, d]
    U = torch.randn(B, P, generator=gen, dtype=J.dtype)
    V1 = torch.randn(B, 1, d, generator=gen, dtype=J.dtype)
    V3 = torch.randn(B, 3, d, generator=gen, dtype=J.dtype)
    tol = dict(rtol=1e-9, atol=1e-12 * float(J.abs().max()) ** 2 * d)
    torch.testing.assert_close(ops.jt(U), torch.einsum("bpd,bp->bd", J, U), **tol)
    for V in (V1, V3):
        JV = torch.einsum("bpd,bmd->bmp", J, V)
        torch.testing.assert_close(ops.jv(V), JV, **tol)
        torch.testing.assert_close(ops.jnorm2(V), JV.pow(2).sum(-1), **tol)
        want = torch.einsum("bpd,bmp->bmd", J, JV)
        torch.testing.assert_close(ops.gram(V), want, **tol)


@pytest.mark.parametrize("name", CASES)
def test_products_equal_the_dense_jacobian(name: str) -> None:
    case = make_case(name, n=3)
    Js = [s.J for s in dense_stack(case)]
    gs = torch.stack([s.g for s in dense_stack(case)])
    for g in (_engine_grad(case.model), flat_grad_fn(case.model)):
        for linearise in (False, True):  # gradients by their own pass, or off the graph
            ops = FuncOperators(g, case.X, case.Y, linearise=linearise)
            torch.testing.assert_close(ops.grads, gs)
            _check_products(ops, Js)


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    original = func._Linearised.__init__

    def counting(self, flat_grad, X, Y, rows):  # type: ignore[no-untyped-def]
        sizes.append(int(rows.numel()))
        original(self, flat_grad, X, Y, rows)

    monkeypatch.setattr(func._Linearised, "__init__", counting)
    return sizes


def test_views_reuse_the_retained_graph_and_stay_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    case = make_case("lenet-1ch", n=6)
    Js = [s.J for s in dense_stack(case)]
    builds = _count_builds(monkeypatch)
    ops = FuncOperators(_engine_grad(case.model), case.X, case.Y)
    assert builds == []  # nothing is linearised before the first product
    _check_products(ops, Js)
    assert builds == [6]
    assert len(FuncOperators(ops._g, case.X, case.Y, linearise=True)._graphs._graphs) == 1
    assert builds == [6, 6]  # linearise=True builds the whole chunk's graph at once
    builds.clear()
    builds.append(6)
    big = torch.tensor([0, 2, 3, 5])  # 4 of 6 ≥ REUSE_FRACTION: padded through the root
    _check_products(ops.restrict(big), [Js[i] for i in big], seed=1)
    assert builds == [6]
    small = torch.tensor([1, 4])  # 2 of 6 < REUSE_FRACTION: a graph of its own
    view = ops.restrict(small)
    _check_products(view, [Js[i] for i in small], seed=2)
    assert builds == [6, 2]
    # A view of that view (1 of 2) reuses the subset's graph; the root is still retained.
    _check_products(view.restrict(torch.tensor([1])), [Js[4]], seed=3)
    _check_products(ops.restrict(big), [Js[i] for i in big], seed=4)
    _check_products(ops, Js, seed=5)
    assert builds == [6, 2]
    # A subset outside the retained subset graph replaces it.
    _check_products(ops.restrict(torch.tensor([0])), [Js[0]], seed=6)
    assert builds == [6, 2, 1]


def test_product_tally_counts_single_sample_products() -> None:
    case = make_case("mlp-3ch", n=4)
    ops = FuncOperators(_engine_grad(case.model), case.X, case.Y)
    V = torch.randn(4, 3, ops.dim, dtype=torch.float64)
    ops.gram(V)
    ops.restrict(torch.tensor([1, 2])).jnorm2(V[[1, 2]])
    ops.jt(ops.grads)
    assert ops.products.n == 4 * 3 * 2 + 2 * 3 + 4
