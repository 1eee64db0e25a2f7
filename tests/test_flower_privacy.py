"""The framework-free round check (leakaudit.integrations.privacy, no flwr needed) for a
client that takes several local steps: it scores the update u = −Δθ/η, and its σ what-if
matches a dense float64 Jacobian of that update built with plain autograd."""

from __future__ import annotations

import pytest
import torch

from leakaudit.integrations.privacy import RoundPolicy, assess
from leakaudit.scores.options import ScoreOptions
from tests.ground_truth import make_case
from tests.test_local_steps import dense_update

TAU, LR = 1.0, 0.5


def exact(d: int, **kw) -> ScoreOptions:
    return ScoreOptions(dtype=torch.float64, max_iter=d, n_probes=d, tol=1e-12, tol_min=1e-12,
                        scores=("grad_norm", "i2f"), **kw)  # fmt: skip


def test_two_local_steps_sigma_needed_matches_dense() -> None:
    case = make_case("lenet-1ch", n=2)
    d = case.X[0].numel()
    policy = RoundPolicy(target_error=TAU, apply_noise=True, lr=LR, max_samples=None,
                         options=exact(d, local_steps=2, local_lr=LR))  # fmt: skip
    summary = assess(case.model, (case.X, case.Y), policy)
    # I²F has no bias under pure noise, so it is linear in σ: sample i needs τ / I²F_i(σ=1).
    unit = [dense_update(case.model, x, y, steps=2, lr=LR).i2f(None, 1.0)
            for x, y in zip(case.X, case.Y)]  # fmt: skip
    assert summary.sigma_needed == pytest.approx(max(TAU / u for u in unit), rel=1e-6)
    assert summary.update_noise_std == pytest.approx(LR * summary.sigma_needed)
    assert summary.frac_exposed_after == 0.0
    one = assess(case.model, (case.X, case.Y), RoundPolicy(
        target_error=TAU, lr=LR, max_samples=None, options=exact(d)))  # fmt: skip
    assert abs(one.sigma_needed - summary.sigma_needed) > 1e-3 * summary.sigma_needed


def test_local_steps_need_the_policy_lr() -> None:
    with pytest.raises(ValueError, match=r"local_lr=0\.1.*lr=0\.5"):
        RoundPolicy(lr=LR, options=ScoreOptions(scores=("i2f",), local_steps=3, local_lr=0.1))
    RoundPolicy(lr=LR, options=ScoreOptions(scores=("i2f",), local_steps=1, local_lr=0.1))
