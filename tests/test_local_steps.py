"""Multi-step FedAvg updates: the scores of u(x) = Σ_k ∇ℓ(θ_k; x) over E local steps
against a dense float64 Jacobian built with plain autograd (create_graph) instead of
torch.func."""

import pytest
import torch
from torch.func import functional_call

from leakaudit.defenses import GaussianNoise
from leakaudit.errors import InputError
from leakaudit.scores.engine import score_samples
from leakaudit.scores.losses import stable_cross_entropy
from leakaudit.scores.options import ScoreOptions
from tests.ground_truth import Dense, make_case


def dense_update(model, x, y, steps: int, lr: float) -> Dense:
    names = [n for n, _ in model.named_parameters()]
    theta0 = [p.detach() for _, p in model.named_parameters()]
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def u(xx):
        params = [t.clone().requires_grad_(True) for t in theta0]
        total = None
        for _ in range(steps):
            out = functional_call(model, ({**dict(zip(names, params)), **buffers},), (xx[None],))
            loss = stable_cross_entropy(out, y[None])
            gs = torch.autograd.grad(loss, params, create_graph=True)
            flat = torch.cat([g.reshape(-1) for g in gs])
            total = flat if total is None else total + flat
            params = [p - lr * g for p, g in zip(params, gs)]
        return total

    J = torch.autograd.functional.jacobian(u, x).reshape(-1, x.numel())
    return Dense(J=J.detach(), g=u(x).detach())


@pytest.mark.parametrize("name", ["lenet-1ch", "mlp-3ch"])
def test_two_local_steps_match_dense(name: str) -> None:
    case = make_case(name, n=2)
    d = case.X[0].numel()
    sigma, lr = 0.05, 0.5
    opts = ScoreOptions(dtype=torch.float64, max_iter=d, n_probes=d, tol=1e-12, tol_min=1e-12,
                        defense=GaussianNoise(sigma), local_steps=2, local_lr=lr,
                        scores=("grad_norm", "lavp_l2_max", "i2f_lb", "i2f"))  # fmt: skip
    res = score_samples(case.model, (case.X, case.Y), opts)
    one = score_samples(case.model, (case.X, case.Y), ScoreOptions(
        dtype=torch.float64, scores=("grad_norm",)))  # fmt: skip
    for i in range(2):
        D = dense_update(case.model, case.X[i], case.Y[i], steps=2, lr=lr)
        s = {k: float(v[i]) for k, v in res.scores.items()}
        assert s["grad_norm"] == pytest.approx(float(D.g.norm()), rel=1e-10)
        # Not the gradient's norm, nor twice it: the second step moved θ.
        g1 = float(one.scores["grad_norm"][i])
        assert abs(s["grad_norm"] - 2 * g1) > 1e-6 * g1
        ev = torch.linalg.eigvalsh(D.A)
        assert s["lavp_l2_max"] == pytest.approx(2 * float(ev[-1]), rel=1e-8)
        assert s["i2f_lb"] == pytest.approx(D.i2f_lb(None, sigma**2), rel=1e-8)
        assert s["i2f"] == pytest.approx(D.i2f(None, sigma**2), rel=1e-6)


def test_one_local_step_is_the_gradient() -> None:
    case = make_case("lenet-1ch", n=2)
    base = ScoreOptions(dtype=torch.float64, max_iter=10, n_probes=4)
    a = score_samples(case.model, (case.X, case.Y), base)
    b = score_samples(case.model, (case.X, case.Y), ScoreOptions(
        dtype=torch.float64, max_iter=10, n_probes=4, local_steps=1, local_lr=3.0))  # fmt: skip
    for k in a.scores:
        torch.testing.assert_close(a.scores[k], b.scores[k], rtol=0, atol=0)


def test_local_steps_refuse_the_autograd_backend() -> None:
    case = make_case("mlp-1ch", n=1)
    opts = ScoreOptions(local_steps=2, backend="autograd", scores=("grad_norm",))
    with pytest.raises(InputError, match=r"torch\.func"):
        score_samples(case.model, (case.X, case.Y), opts)
