"""Gradient inversion attacks on the DLG LeNet and real digits.

Ground truths: the true images (PSNR), the true labels (iDLG), a per-sample autograd
loop (objective), a one-problem-at-a-time L-BFGS run (batching), and a dense float64
Jacobian from ``torch.func.jacfwd`` for the I²F lower bound that sets the noise level.
"""

from __future__ import annotations

import math
from typing import get_args

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import Tensor, nn
from torch.func import jacfwd

from leakaudit.attacks import (
    AttackResult,
    InputSpace,
    attack_config,
    infer_labels,
    make_per_sample_grads,
    observed_gradients,
    run_attack,
)
from leakaudit.attacks.lbfgs import lbfgs_minimize
from leakaudit.attacks.objective import cosine_distance, l2_distance, total_variation
from leakaudit.defenses import GaussianNoise
from leakaudit.metrics.quality import psnr
from leakaudit.models import build_model

SHAPE = (1, 16, 16)


def lenet(seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The DLG LeNet (sigmoid, uniform(-0.5, 0.5) init) for 1×16×16 inputs."""
    torch.manual_seed(seed)
    model = build_model(
        "lenet", num_classes=10, in_channels=1, image_size=16, kwargs={"init": "dlg"}
    )
    return model.to(dtype).eval()


def digits16(per_class: int = 1, classes: range = range(10)) -> tuple[Tensor, Tensor]:
    """scikit-learn digits, the first ``per_class`` of each class, upsampled to 16×16."""
    d = load_digits()
    pos = [i for c in classes for i in (d.target == c).nonzero()[0][:per_class]]
    x = torch.tensor(d.images[pos] / 16.0, dtype=torch.float32)[:, None]
    x = F.interpolate(x, size=16, mode="bilinear", align_corners=False).clamp(0, 1)
    return x, torch.tensor(d.target[pos]).long()


def attack(name: str, model: nn.Module, g: Tensor, y: Tensor, budget: str = "standard") -> Tensor:
    res = run_attack(
        name,
        model,
        g,
        input_shape=SHAPE,
        num_classes=10,
        space=InputSpace(),
        labels=y,
        budget=budget,  # type: ignore[arg-type]
    )
    return res.reconstruction.clamp(0, 1)


def i2f_lower_bound_unit_sigma(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """‖J‖_F / λ_max(JᵀJ) per sample (SPEC i2f_lb at σ = 1), J dense from jacfwd in float64."""
    m64 = lenet_like(model)
    per_sample = make_per_sample_grads(m64)
    out = []
    for xi, yi in zip(x.double(), F.one_hot(y, 10).double(), strict=True):
        jac = jacfwd(lambda v, t=yi: per_sample(v[None], t[None])[0])(xi)
        jac = jac.reshape(jac.shape[0], -1)
        lam_max = torch.linalg.eigvalsh(jac.T @ jac)[-1]
        out.append(torch.linalg.matrix_norm(jac) / lam_max)
    return torch.stack(out)


def lenet_like(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).double()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: OpenMP threads only add overhead (and thrash on a busy 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def case() -> tuple[nn.Module, Tensor, Tensor, Tensor]:
    model = lenet()
    x, y = digits16(classes=range(4))
    return model, x, y, observed_gradients(model, x, y, 10)


@pytest.fixture(scope="module")
def clean_results(case) -> dict[str, AttackResult]:
    """Each undefended attack at the standard budget."""
    model, _, y, g = case
    return {
        name: run_attack(
            name, model, g, input_shape=SHAPE, num_classes=10, space=InputSpace(), labels=y
        )
        for name in ("dlg", "idlg", "ig")
    }


@pytest.fixture(scope="module")
def clean_psnr(case, clean_results) -> dict[str, Tensor]:
    """PSNR of each undefended attack at the standard budget, per sample."""
    x = case[1]
    return {n: psnr(r.reconstruction.clamp(0, 1), x) for n, r in clean_results.items()}


def test_undefended_attacks_recover_the_labels(case, clean_results) -> None:
    y = case[2]
    for name, res in clean_results.items():
        assert torch.equal(res.labels, y), name  # DLG's jointly optimised soft label too


@pytest.mark.parametrize("name", ["dlg", "idlg", "ig"])
def test_undefended_attacks_reconstruct_real_digits(clean_psnr, name: str) -> None:
    quality = clean_psnr[name]
    assert torch.all(quality > 25.0), f"{name} PSNR {quality.tolist()}"


def test_gaussian_noise_sized_by_i2f_ruins_reconstruction(case, clean_psnr) -> None:
    model, x, y, g = case
    d = math.prod(SHAPE)
    # Error norm at which PSNR (range 1) would be 15 dB: ‖e‖ = √(d · 10^(−1.5)).
    target_error = math.sqrt(d * 10 ** (-1.5))
    unit = i2f_lower_bound_unit_sigma(model, x, y)
    sigma = float(target_error / unit.min())  # every sample's predicted error ≥ target
    noisy = GaussianNoise(sigma).apply(g, torch.Generator().manual_seed(1))
    for name in ("dlg", "ig"):
        clean = clean_psnr[name]
        defended = psnr(attack(name, model, noisy, y), x)
        assert torch.all(clean - defended > 10.0), (name, sigma, clean, defended)


def test_idlg_label_inference_is_exact_for_every_class() -> None:
    # CE + final linear layer on sigmoid features (h > 0), batch size 1: the true class's
    # weight-gradient row is (p_y − 1)·h < 0 and every other row p_c·h > 0.
    x, y = digits16(per_class=3)
    for seed in range(3):
        model = lenet(seed)
        g = observed_gradients(model, x, y, 10)
        assert torch.equal(infer_labels(model, g, 10), y)


def test_idlg_label_inference_needs_a_final_linear_layer() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(256, 10), nn.Sigmoid())
    with pytest.raises(ValueError, match=r"final nn\.Linear"):
        infer_labels(model, torch.zeros(1, 2570), 9)


def test_per_sample_gradients_match_autograd_loop() -> None:
    model = lenet(dtype=torch.float64)
    x, y = digits16(classes=range(3))
    x = x.double()
    got = make_per_sample_grads(model)(x, F.one_hot(y, 10).double())
    for i in range(3):
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        want = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        torch.testing.assert_close(got[i], want)


def test_matching_loss_gradient_wrt_input_matches_finite_differences() -> None:
    model = lenet(dtype=torch.float64)
    x, y = digits16(classes=range(2))
    x, target = x.double(), observed_gradients(model, x.double(), y, 10)
    per_sample = make_per_sample_grads(model)
    onehot = F.one_hot(y, 10).double()
    cand = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).double()

    def loss(v: Tensor) -> Tensor:
        g = per_sample(v, onehot)
        return l2_distance(g, target).sum() + cosine_distance(g, target).sum()

    cand.requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(cand), cand)
    direction = torch.randn(cand.shape, generator=torch.Generator().manual_seed(1)).double()
    eps = 1e-5
    with torch.no_grad():
        fd = (loss(cand + eps * direction) - loss(cand - eps * direction)) / (2 * eps)
    torch.testing.assert_close((grad * direction).sum(), fd, rtol=1e-5, atol=1e-8)


def test_distances_and_total_variation_on_known_values() -> None:
    a = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    b = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    torch.testing.assert_close(l2_distance(a, b), torch.tensor([25.0, 5.0]))
    torch.testing.assert_close(
        cosine_distance(a, torch.tensor([[3.0, 4.0], [0.0, 1.0]])), torch.tensor([0.0, 1.0])
    )
    img = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])  # one vertical edge
    # horizontal differences: |1-0| twice over 2 entries → 1; vertical: 0.
    torch.testing.assert_close(total_variation(img), torch.tensor([1.0]))


def test_batched_lbfgs_equals_one_problem_at_a_time() -> None:
    model = lenet()
    x, y = digits16(classes=range(3))
    target = observed_gradients(model, x, y, 10)
    per_sample = make_per_sample_grads(model)
    onehot = F.one_hot(y, 10).float()
    x0 = torch.randn(3, 256, generator=torch.Generator().manual_seed(0))

    def make(rows: slice):
        return lambda v: l2_distance(per_sample(v.view(-1, *SHAPE), onehot[rows]), target[rows])

    batched = lbfgs_minimize(make(slice(0, 3)), x0, iterations=15).x
    for i in range(3):
        alone = lbfgs_minimize(make(slice(i, i + 1)), x0[i : i + 1], iterations=15).x
        torch.testing.assert_close(batched[i : i + 1], alone, rtol=1e-3, atol=1e-3)


def test_attacks_are_deterministic_for_a_seed(case) -> None:
    model, _, y, g = case
    for name, cfg in (
        ("dlg", attack_config("dlg", "fast", iterations=20)),
        ("ig", attack_config("ig", "fast", iterations=30, restarts=2)),
    ):
        a, b = (
            run_attack(
                name,
                model,
                g[:2],
                input_shape=SHAPE,
                num_classes=10,
                space=InputSpace(),
                labels=y[:2],
                config=cfg,
            ).reconstruction
            for _ in range(2)
        )
        assert torch.equal(a, b)


def test_ig_respects_the_pixel_box_of_a_normalised_space(case) -> None:
    model, _, y, g = case
    space = InputSpace.from_normalization([0.5], [0.25])  # box [-2, 2]
    cfg = attack_config("ig", "fast", iterations=20)
    res = run_attack(
        "ig", model, g[:2], input_shape=SHAPE, num_classes=10, space=space, labels=y[:2], config=cfg
    )
    assert res.reconstruction.min() >= -2.0 and res.reconstruction.max() <= 2.0
    unit = space.to_unit(torch.tensor([[[[-2.0, 2.0]]]]))
    torch.testing.assert_close(unit, torch.tensor([[[[0.0, 1.0]]]]))


def test_attack_config_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown attack"):
        attack_config("gan")
    with pytest.raises(ValueError, match="unknown budget"):
        attack_config("dlg", "huge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no setting 'momentum'"):
        attack_config("ig", momentum=0.9)


def test_every_attack_has_a_preset_for_every_budget_and_no_other() -> None:
    from leakaudit.attacks.base import BUDGETS
    from leakaudit.attacks.base import Budget as BudgetName
    from leakaudit.attacks.dlg import DLG_ITERATIONS
    from leakaudit.attacks.ig import IG_BUDGETS
    from leakaudit.cli.options import Budget

    assert list(DLG_ITERATIONS) == list(IG_BUDGETS) == list(BUDGETS)
    assert [b.value for b in Budget] == list(BUDGETS)  # the CLI's choices
    assert list(get_args(BudgetName)) == list(BUDGETS)  # the type's
    with pytest.raises(ValueError, match=r"unknown budget 'fats' \(did you mean fast\?\)"):
        attack_config("dlg", "fats")  # type: ignore[arg-type]


def test_ig_restarts_keep_the_lowest_matching_loss(case) -> None:
    model, _, y, g = case
    # The first restart of a 2-restart run starts where the 1-restart run starts.
    losses = {
        r: run_attack(
            "ig",
            model,
            g,
            input_shape=SHAPE,
            num_classes=10,
            space=InputSpace(),
            labels=y,
            config=attack_config("ig", "fast", iterations=25, restarts=r),
        ).matching_loss
        for r in (1, 2)
    }
    assert torch.all(losses[2] <= losses[1])
