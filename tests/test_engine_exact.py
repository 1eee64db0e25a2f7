"""Every score against dense float64 ground truth on tiny models with real inputs."""

import pytest
import torch

from leakaudit.defenses import DPClipNoise, GaussianNoise, LaplaceNoise, Pruning
from leakaudit.scores.engine import score_samples
from leakaudit.scores.options import ScoreOptions
from tests.ground_truth import CASES, dense, make_case


def exact_options(d: int, **kw) -> ScoreOptions:
    """Float64, enough Lanczos steps and probes for the Krylov spaces to be exhausted; the
    Lanczos path even on these small inputs (the dense path: tests/test_dense_path.py)."""
    kw.setdefault("dense_max_dim", 0)
    return ScoreOptions(dtype=torch.float64, max_iter=d, n_probes=d, tol=1e-12, tol_min=1e-12, **kw)


@pytest.mark.parametrize("name", CASES)
def test_all_scores_match_dense(name: str) -> None:
    case = make_case(name, n=2)
    d = case.X[0].numel()
    sigma = 0.05
    res = score_samples(
        case.model, (case.X, case.Y), exact_options(d, defense=GaussianNoise(sigma))
    )
    assert res.backend == "func"
    assert bool(res.diagnostics["converged"].all())
    for i in range(len(case.X)):
        D = dense(case.model, case.X[i], case.Y[i])
        ev = torch.linalg.eigvalsh(D.A)
        evc = torch.linalg.eigvalsh(D.H_cos)
        s = {k: float(v[i]) for k, v in res.scores.items()}
        assert s["grad_norm"] == pytest.approx(float(D.g.norm()), rel=1e-12)
        # SPEC accuracy targets, and far tighter in float64.
        assert s["lavp_l2_max"] == pytest.approx(2 * float(ev[-1]), rel=1e-8)
        assert abs(s["lavp_l2_min"] - 2 * float(ev[0])) <= 1e-6 * 2 * float(ev[-1])
        assert s["lavp_cos_max"] == pytest.approx(float(evc[-1]), rel=1e-8)
        assert abs(s["lavp_cos_min"] - float(evc[0])) <= 1e-6 * float(evc[-1])
        gm = (2 * float(ev[-1]) * float(evc[-1])) ** 0.5
        assert s["lavp_gm"] == pytest.approx(gm, rel=1e-8)
        # Exact probes (the standard basis): I²F equals the closed form.
        assert s["i2f_lb"] == pytest.approx(D.i2f_lb(None, sigma**2), rel=1e-8)
        assert s["i2f"] == pytest.approx(D.i2f(None, sigma**2), rel=1e-6)
        assert float(res.diagnostics["i2f_se"][i]) == 0.0


@pytest.mark.parametrize(
    "defense",
    [Pruning(ratio=0.7), DPClipNoise(clip=0.5, sigma=0.2), LaplaceNoise(scale=0.03)],
    ids=["pruning", "dp", "laplace"],
)
def test_i2f_under_each_defence_matches_dense(defense) -> None:
    case = make_case("lenet-1ch", n=2)
    d = case.X[0].numel()
    opts = exact_options(d, defense=defense, scores=("i2f_lb", "i2f"))
    res = score_samples(case.model, (case.X, case.Y), opts)
    for i in range(2):
        D = dense(case.model, case.X[i], case.Y[i])
        bias = defense.bias(D.g[None])
        bias = None if bias is None else bias[0]
        var = float(defense.noise_variance(D.g[None])[0])
        assert float(res.scores["i2f_lb"][i]) == pytest.approx(D.i2f_lb(bias, var), rel=1e-8)
        # The bias part goes through conjugate gradients (tolerance 10·tol).
        assert float(res.scores["i2f"][i]) == pytest.approx(D.i2f(bias, var), rel=1e-6)


@pytest.mark.parametrize("mode", ["relative", "absolute"])
@pytest.mark.parametrize("name", CASES)
def test_i2f_damping_modes_match_dense(name: str, mode: str) -> None:
    """ε = damping·λ_max or ε = damping; DP clipping gives a bias (CG) and noise (SLQ) term."""
    case = make_case(name, n=2)
    d = case.X[0].numel()
    defense = DPClipNoise(clip=0.05, sigma=0.2)
    opts = exact_options(d, defense=defense, scores=("i2f",), damping=1e-2, damping_mode=mode)
    res = score_samples(case.model, (case.X, case.Y), opts)
    assert bool(res.diagnostics["converged"].all())
    for i in range(2):
        D = dense(case.model, case.X[i], case.Y[i])
        bias = defense.bias(D.g[None])
        assert bias is not None and float(bias.norm()) > 0
        var = float(defense.noise_variance(D.g[None])[0])
        truth = D.i2f(bias[0], var, 1e-2, mode)
        assert float(res.scores["i2f"][i]) == pytest.approx(truth, rel=1e-6)


def test_absolute_damping_is_the_relative_one_at_rho_equal_damping_times_lambda_max() -> None:
    case = make_case("lenet-1ch", n=1)
    d = case.X[0].numel()
    D = dense(case.model, case.X[0], case.Y[0])
    lam = float(torch.linalg.eigvalsh(D.A)[-1])

    def i2f(damping: float, mode: str) -> float:
        opts = exact_options(d, scores=("i2f",), damping=damping, damping_mode=mode)
        return float(score_samples(case.model, (case.X, case.Y), opts).scores["i2f"][0])

    relative = i2f(1e-3, "relative")
    assert i2f(1e-3 * lam, "absolute") == pytest.approx(relative, rel=1e-6)
    # The same number read as an absolute ε (λ_max ≈ 0.1 here) is a different score.
    assert i2f(1e-3, "absolute") < 0.7 * relative


def test_float32_absolute_damping_within_stated_error() -> None:
    """Default float32 options with early stopping: the quadrature check uses the same ε."""
    case = make_case("relubn-3ch", n=3)
    opts = ScoreOptions(defense=GaussianNoise(0.1), scores=("i2f",), damping_mode="absolute")
    res = score_samples(case.model.float(), (case.X.float(), case.Y), opts)
    assert bool(res.diagnostics["converged"].all())
    for i in range(3):
        D = dense(case.model.double(), case.X[i], case.Y[i])
        truth = D.i2f(None, 0.01, 1e-3, "absolute")
        se = float(res.diagnostics["i2f_se"][i])
        assert abs(float(res.scores["i2f"][i]) - truth) <= 4 * se + 1e-4 * truth


def test_unknown_damping_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="damping_mode: must be one of 'relative', 'absolute'"):
        ScoreOptions(damping_mode="paper")  # type: ignore[arg-type]


def test_dp_second_moment_matches_monte_carlo() -> None:
    """E‖Jᵀδ‖² = ‖Jᵀb‖² + s²‖J‖_F² checked against real draws of the DP mechanism."""
    case = make_case("mlp-1ch", n=1)
    defense = DPClipNoise(clip=0.3, sigma=0.5)
    D = dense(case.model, case.X[0], case.Y[0])
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([defense.apply(D.g[None], gen)[0] - D.g for _ in range(4000)])
    mc = (draws @ D.J).pow(2).sum(1)
    lam = float(torch.linalg.eigvalsh(D.A)[-1])
    res = score_samples(
        case.model, (case.X, case.Y), exact_options(36, defense=defense, scores=("i2f_lb",))
    )
    predicted = (float(res.scores["i2f_lb"][0]) * lam) ** 2
    assert predicted == pytest.approx(
        float(mc.mean()), rel=4 * float(mc.std()) / 4000**0.5 / float(mc.mean())
    )


def test_float32_defaults_meet_spec_accuracy() -> None:
    """Default options (float32, random probes, early stopping) on 3-channel inputs."""
    case = make_case("lenet-3ch", n=3)
    model = case.model.float()
    res = score_samples(model, (case.X.float(), case.Y), ScoreOptions(defense=GaussianNoise(0.1)))
    assert bool(res.diagnostics["converged"].all())
    for i in range(3):
        D = dense(case.model.double(), case.X[i], case.Y[i])
        ev = torch.linalg.eigvalsh(D.A)
        evc = torch.linalg.eigvalsh(D.H_cos)
        s = {k: float(v[i]) for k, v in res.scores.items()}
        assert s["lavp_l2_max"] == pytest.approx(2 * float(ev[-1]), rel=1e-3)
        assert abs(s["lavp_l2_min"] - 2 * float(ev[0])) <= 1e-3 * 2 * float(ev[-1])
        assert s["lavp_cos_max"] == pytest.approx(float(evc[-1]), rel=1e-3)
        assert abs(s["lavp_cos_min"] - float(evc[0])) <= 1e-3 * float(evc[-1])
        # Within 4 stated standard errors of the truth (the Krylov spaces span d = 48 here,
        # so the traces are exact: SE 0 and float32 rounding only).
        for name, truth in (("i2f_lb", D.i2f_lb(None, 0.01)), ("i2f", D.i2f(None, 0.01))):
            se = float(res.diagnostics[f"{name}_se"][i])
            assert abs(s[name] - truth) <= 4 * se + 1e-4 * truth, (name, s[name], truth, se)


def _smoothed_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1)


def test_custom_loss_is_used() -> None:
    case = make_case("mlp-1ch", n=2)
    opts = exact_options(36, loss=_smoothed_ce, scores=("grad_norm", "lavp_l2_max"))
    res = score_samples(case.model, (case.X, case.Y), opts)
    default = score_samples(case.model, (case.X, case.Y), exact_options(36, scores=("grad_norm",)))
    for i in range(2):
        D = dense(case.model, case.X[i], case.Y[i], loss_fn=_smoothed_ce)
        ev = torch.linalg.eigvalsh(D.A)
        assert float(res.scores["grad_norm"][i]) == pytest.approx(float(D.g.norm()), rel=1e-12)
        assert float(res.scores["lavp_l2_max"][i]) == pytest.approx(2 * float(ev[-1]), rel=1e-8)
        assert float(res.scores["grad_norm"][i]) != pytest.approx(
            float(default.scores["grad_norm"][i]), rel=1e-3
        )
