"""The default loss is cross-entropy, and keeps its derivatives' digits in float32."""

import torch
import torch.nn.functional as F

from leakaudit.scores.engine import score_samples
from leakaudit.scores.losses import stable_cross_entropy
from leakaudit.scores.options import ScoreOptions
from tests.ground_truth import digits, flat_grad_fn, make_case


def test_equals_cross_entropy_and_its_derivatives_in_float64() -> None:
    torch.manual_seed(0)
    logits = torch.randn(5, 10, dtype=torch.float64) * 6  # spread to near-certain classes
    y = torch.tensor([0, 3, 9, 4, 4])
    assert torch.allclose(stable_cross_entropy(logits, y), F.cross_entropy(logits, y), rtol=1e-14)
    g = torch.func.grad(lambda z: stable_cross_entropy(z, y))(logits)
    h = torch.func.hessian(lambda z: stable_cross_entropy(z, y))(logits)
    # Closed forms, free of cancellation: ∂/∂z = (p − e_y)/B with 1 − p_y = Σ_{j≠y} p_j, and
    # ∂²/∂z² = (diag(p) − ppᵀ)/B per sample with p_i(1 − p_i) = p_i Σ_{j≠i} p_j.
    p = F.softmax(logits, 1)
    B = len(y)
    for b in range(B):
        expect_g = p[b].clone()
        expect_g[y[b]] = -(p[b].sum() - p[b, y[b]])
        assert torch.allclose(g[b], expect_g / B, rtol=1e-12, atol=0)
        H = -torch.outer(p[b], p[b])
        H.diagonal().copy_(p[b] * (p[b].sum() - p[b]))
        assert torch.allclose(h[b, :, b, :], H / B, rtol=0, atol=1e-12 * float(H.abs().max()) / B)


def _confident_case():
    """A model trained until it classifies its digits with p_y ≈ 1 - 1e-5."""
    case = make_case("mlp-1ch", n=4)
    X, Y = digits(40, 6)
    opt = torch.optim.Adam(case.model.parameters(), lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        F.cross_entropy(case.model(X), Y).backward()
        opt.step()
    with torch.no_grad():
        p = F.softmax(case.model(case.X), 1).gather(1, case.Y[:, None])
    assert float(p.min()) > 1 - 1e-3  # the regime where p_y - 1 cancels in float32
    return case


def test_float32_scores_of_confident_samples_keep_their_digits() -> None:
    case = _confident_case()
    model32 = type(case.model)(1, 6).float()
    model32.load_state_dict({k: v.float() for k, v in case.model.state_dict().items()})
    X32 = case.X.float()
    # Ground truth: float64, plain cross-entropy.
    g64 = flat_grad_fn(case.model)
    truth = torch.stack([g64(case.X[i], case.Y[i]).norm() for i in range(4)])
    opts = ScoreOptions(scores=("grad_norm", "lavp_l2_max"), max_iter=36)
    stable = score_samples(model32, (X32, case.Y), opts)
    plain = score_samples(
        model32,
        (X32, case.Y),
        ScoreOptions(
            scores=("grad_norm", "lavp_l2_max"),
            max_iter=36,
            loss=lambda o, t: F.cross_entropy(o, t),
        ),
    )
    err_stable = ((stable.scores["grad_norm"] - truth).abs() / truth).max()
    err_plain = ((plain.scores["grad_norm"] - truth).abs() / truth).max()
    assert err_stable < 1e-5
    assert err_stable < err_plain / 10
