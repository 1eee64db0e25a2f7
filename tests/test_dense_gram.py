"""The dense path's Jacobians: J·v by reverse over reverse (``jv_many``) against the
jacrev truth, the Gram formed group by group against one pass, and what the demo scan
does not load (forward mode, scikit-learn)."""

import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from leakaudit.defenses import GaussianNoise
from leakaudit.jacobians.autograd import AutogradOperators, module_forward
from leakaudit.jacobians.func import FuncOperators, make_flat_grad
from leakaudit.scores import dense
from leakaudit.scores.engine import score_samples
from leakaudit.scores.options import ScoreOptions
from tests.ground_truth import CASES, dense_stack, flat_grad_fn, make_case


def _func_ops(name: str, plain: bool) -> tuple[FuncOperators, torch.Tensor]:
    case = make_case(name, n=3)
    params = {k: v.detach() for k, v in case.model.named_parameters()}
    buffers = {k: v.detach() for k, v in case.model.named_buffers()}
    g = make_flat_grad(case.model, params, buffers, F.cross_entropy)
    ops = FuncOperators(g if plain else flat_grad_fn(case.model), case.X, case.Y)
    J = torch.stack([D.J for D in dense_stack(case)])  # [B, P, d]
    return ops, J


@pytest.mark.parametrize("plain", [True, False], ids=["reverse-over-reverse", "jvp fallback"])
@pytest.mark.parametrize("name", CASES)
def test_jv_many_equals_the_jacrev_jacobian(name: str, plain: bool) -> None:
    ops, J = _func_ops(name, plain)
    B, _, d = J.shape
    gen = torch.Generator().manual_seed(0)
    V = torch.randn(B, 4, d, generator=gen, dtype=torch.float64)
    want = torch.einsum("bpd,bmd->bmp", J, V)
    tol = 1e-10 * float(want.abs().max())
    torch.testing.assert_close(ops.jv_many(V), want, rtol=1e-9, atol=tol)
    assert ops.products.n == B * 4
    basis = dense.jacobian(ops, 2**30)  # the dense path's rows: J eᵢ
    tol = 1e-10 * float(J.abs().max())
    torch.testing.assert_close(basis, J.transpose(1, 2), rtol=1e-9, atol=tol)


def test_autograd_jv_many_is_its_jv() -> None:
    case = make_case("relubn-1ch", n=2)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in case.model.named_parameters()}
    forward = module_forward(case.model, params, dict(case.model.named_buffers()))
    ops = AutogradOperators(forward, list(params.values()), case.X, case.Y, F.cross_entropy)
    J = torch.stack([D.J for D in dense_stack(case)])
    V = torch.randn(2, 3, J.shape[2], dtype=torch.float64)
    torch.testing.assert_close(ops.jv_many(V), torch.einsum("bpd,bmd->bmp", J, V))


@pytest.mark.parametrize("name", ["lenet-1ch", "relubn-3ch"])
def test_gram_in_groups_equals_one_pass(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ops, J = _func_ops(name, plain=True)
    B, P, d = J.shape
    U = torch.randn(B, P, dtype=torch.float64)
    monkeypatch.setattr(dense, "WORKING_SET", 1)  # one sample at a time
    A1, (w1, none) = dense.gram(ops, 2**30, (U, None))
    monkeypatch.setattr(dense, "WORKING_SET", 2**40)  # all at once
    A2, (w2, _) = dense.gram(ops, 2**30, (U, None))
    assert none is None
    assert ops.products.n == 2 * B * d  # d products per sample in both
    # the same products, batched differently: equal to float64 rounding
    torch.testing.assert_close(A1, A2, rtol=1e-12, atol=1e-14 * float(A2.abs().max()))
    torch.testing.assert_close(w1, w2, rtol=1e-12, atol=1e-14 * float(w2.abs().max()))
    truth = J.transpose(1, 2) @ J
    torch.testing.assert_close(A1, truth, rtol=1e-9, atol=1e-10 * float(truth.abs().max()))
    torch.testing.assert_close(w1, torch.einsum("bpd,bp->bd", J, U))


def test_digits_dense_scan_loads_neither_forward_mode_nor_scikit_learn() -> None:
    """The dense path (the demo's) forms J without jvp, so torch's forward-mode decompositions
    (a one-time TorchScript set-up of ~0.4 s) are never loaded, and the digits are read
    without importing scikit-learn (~0.15 s)."""
    code = textwrap.dedent(
        """
        import sys, torch
        from leakaudit.io.sources import digits_source
        from leakaudit.models import build_model
        from leakaudit.scores.engine import score_samples
        from leakaudit.scores.options import ScoreOptions
        source = digits_source()
        X = torch.stack([source.read(i) for i in range(4)])
        torch.manual_seed(0)
        model = build_model("lenet", num_classes=10, in_channels=1, image_size=8, kwargs={})
        opts = ScoreOptions(device="cpu", scores=("grad_norm", "i2f"))
        res = score_samples(model, (X, source.labels[:4]), opts)
        assert bool((res.diagnostics["lanczos_steps"] == 0).all())  # the dense path
        print([m for m in ("torch._decomp.decompositions_for_jvp", "sklearn") if m in sys.modules])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_dense_scores_do_not_depend_on_the_group_size(monkeypatch: pytest.MonkeyPatch) -> None:
    case = make_case("lenet-3ch", n=3)
    opts = ScoreOptions(device="cpu", dtype=torch.float64, defense=GaussianNoise(0.05))
    whole = score_samples(case.model, (case.X, case.Y), opts)
    monkeypatch.setattr(dense, "WORKING_SET", 1)
    grouped = score_samples(case.model, (case.X, case.Y), opts)
    for key, value in whole.scores.items():
        torch.testing.assert_close(grouped.scores[key], value, rtol=1e-12, atol=0, msg=key)


def test_digits_are_scikit_learns() -> None:
    from sklearn.datasets import load_digits

    from leakaudit.io.sources import digits_source

    want = load_digits()
    source = digits_source()
    assert len(source.ids) == len(want.target) == 1797
    assert torch.equal(source.labels, torch.as_tensor(want.target, dtype=torch.int64))
    for i in (0, 1, 900, 1796):
        expected = torch.tensor(want.images[i] / 16.0, dtype=torch.float32)[None]
        assert torch.equal(source.read(i), expected)
