"""The exact dense path (d ≤ dense_max_dim) against dense float64 truth built with
``jacrev`` (tests/ground_truth.py), against the Lanczos path, and its bookkeeping."""

import pytest
import torch
from torch.utils.data import TensorDataset

from leakaudit.calibration.document import ACCURACY_SETTINGS
from leakaudit.config.schema import ScoresConfig
from leakaudit.defenses import DPClipNoise, GaussianNoise, Pruning
from leakaudit.scores.batches import score_batches
from leakaudit.scores.batching import Batching
from leakaudit.scores.engine import score_samples
from leakaudit.scores.options import OptionError, ScoreOptions
from tests.ground_truth import CASES, dense, dense_batch, make_case

SIGMA = 0.05


def truth(D, defense, damping: float = 1e-3, mode: str = "relative") -> dict[str, float]:
    """Every score of one sample from its dense J (jacrev) and eigvalsh."""
    ev, evc = torch.linalg.eigvalsh(D.A), torch.linalg.eigvalsh(D.H_cos)
    bias = defense.bias(D.g[None])
    bias = None if bias is None else bias[0]
    var = float(defense.noise_variance(D.g[None])[0])
    return {
        "grad_norm": float(D.g.norm()),
        "lavp_l2_max": 2 * float(ev[-1]),
        "lavp_l2_min": 2 * float(ev[0]),
        "lavp_cos_max": float(evc[-1]),
        "lavp_cos_min": float(evc[0]),
        "lavp_gm": (2 * float(ev[-1]) * float(evc[-1])) ** 0.5,
        "i2f_lb": D.i2f_lb(bias, var),
        "i2f": D.i2f(bias, var, damping, mode),
    }


def scan(case, **kw):
    kw.setdefault("defense", GaussianNoise(SIGMA))
    return score_samples(case.model, (case.X, case.Y), ScoreOptions(device="cpu", **kw))


@pytest.mark.parametrize("name", CASES)
def test_every_score_equals_dense_truth_in_float64(name: str) -> None:
    case = make_case(name, n=2)
    res = scan(case, dtype=torch.float64)
    assert bool((res.diagnostics["lanczos_steps"] == 0).all())  # served by the dense path
    assert bool(res.diagnostics["converged"].all())
    for i in range(2):
        want = truth(dense(case.model, case.X[i], case.Y[i]), GaussianNoise(SIGMA))
        top = {"l2": want["lavp_l2_max"], "cos": want["lavp_cos_max"]}
        for key, value in want.items():
            got = float(res.scores[key][i])
            if key.endswith("_min"):  # tiny: relative to the operator's λ_max
                assert abs(got - value) <= 1e-10 * top[key.split("_")[1]], key
            else:
                assert got == pytest.approx(value, rel=1e-10), key
        for key in ("i2f_se", "i2f_lb_se", "trace_jtj_se"):
            assert float(res.diagnostics[key][i]) == 0.0
        assert float(res.diagnostics["residual_l2_max"][i]) < 1e-12


def test_autograd_backend_gives_the_same_dense_scores() -> None:
    """The fallback's J·v (double-vjp) forms the same Jacobian as torch.func's."""
    case = make_case("relubn-1ch", n=2)
    f = scan(case, dtype=torch.float64, backend="func")
    a = scan(case, dtype=torch.float64, backend="autograd")
    assert a.backend == "autograd" and a.products == f.products == 2 * case.X[0].numel()
    for key in f.scores:
        torch.testing.assert_close(a.scores[key], f.scores[key], rtol=1e-10, atol=0)


def test_zero_gradient_gives_nan_cosine_scores_not_an_error() -> None:
    case = make_case("mlp-1ch", n=2)
    res = scan(case, dtype=torch.float64, loss=lambda out, y: 0.0 * out.sum())
    assert bool((res.scores["grad_norm"] == 0).all())
    assert bool(res.scores["lavp_cos_max"].isnan().all())
    assert not bool(res.diagnostics["converged"].any())


@pytest.mark.parametrize(
    "defense", [Pruning(ratio=0.7), DPClipNoise(clip=0.5, sigma=0.2)], ids=["pruning", "dp"]
)
@pytest.mark.parametrize("mode,damping", [("relative", 1e-3), ("absolute", 1e-4)])
def test_i2f_bias_and_damping_equal_dense_truth(defense, mode: str, damping: float) -> None:
    case = make_case("relubn-1ch", n=2)
    res = scan(
        case,
        dtype=torch.float64,
        defense=defense,
        damping=damping,
        damping_mode=mode,
        scores=("i2f_lb", "i2f"),
    )
    for i in range(2):
        want = truth(dense(case.model, case.X[i], case.Y[i]), defense, damping, mode)
        assert float(res.scores["i2f"][i]) == pytest.approx(want["i2f"], rel=1e-10)
        assert float(res.scores["i2f_lb"][i]) == pytest.approx(want["i2f_lb"], rel=1e-10)
    assert float(res.diagnostics["cg_residual"].max()) < 1e-12
    assert bool(res.diagnostics["converged"].all())


@pytest.mark.parametrize("name", ["lenet-1ch", "mlp-3ch"])
def test_float32_dense_path_agrees_with_the_lanczos_path(name: str) -> None:
    """Both float32 paths against each other within the Lanczos path's accuracy targets:
    relative 1e-3 for the top eigenvalues and I²F, 1e-3·λ_max for λ_min."""
    case = make_case(name, n=3)
    fast, slow = scan(case), scan(case, dense_max_dim=0)
    assert bool((slow.diagnostics["lanczos_steps"] > 0).all())
    assert bool((fast.diagnostics["lanczos_steps"] == 0).all())
    for key in fast.scores:
        a, b = fast.scores[key], slow.scores[key]
        if key.endswith("_min"):
            top = fast.scores[key.replace("_min", "_max")]
            assert bool(((a - b).abs() <= 1e-3 * top).all()), key
        else:
            torch.testing.assert_close(a, b, rtol=2e-3, atol=0, msg=key)


def test_chunking_seed_and_products() -> None:
    case = make_case("lenet-3ch", n=5)
    d = case.X[0].numel()
    one = scan(case, chunk_size=1, seed=1, dtype=torch.float64)
    five = scan(case, chunk_size=5, seed=7, dtype=torch.float64)
    for key in one.scores:  # batched BLAS may round differently: float64 and 1e-12
        torch.testing.assert_close(one.scores[key], five.scores[key], rtol=1e-12, atol=0)
    # d J·v products per sample, nothing else (w = Jᵀu and Jᵀb come from J itself)
    assert one.products == five.products == 5 * d
    old = scan(case, chunk_size=5, dense_max_dim=0)
    assert old.products > 5 * 5 * d  # Lanczos costs far more on these inputs


def test_dense_max_dim_is_a_threshold_on_d() -> None:
    case = make_case("lenet-1ch", n=2)
    d = case.X[0].numel()
    at, below = scan(case, dense_max_dim=d), scan(case, dense_max_dim=d - 1)
    assert at.products == 2 * d and bool((at.diagnostics["lanczos_steps"] == 0).all())
    assert bool((below.diagnostics["lanczos_steps"] > 0).all())
    grad_only = scan(case, scores=("grad_norm",))  # no spectral work, no products
    assert grad_only.products == 0


@pytest.mark.parametrize("size", [2, 3])
def test_batch_blocks_equal_dense_truth(size: int) -> None:
    """Batch scoring's per-sample parts of I²F (bias and noise), exact per block."""
    case = make_case("lenet-1ch", n=size)
    defense = DPClipNoise(clip=0.05, sigma=0.2)
    opts = ScoreOptions(dtype=torch.float64, defense=defense, scores=("i2f",), device="cpu")
    data = TensorDataset(case.X, case.Y)
    res = score_batches(case.model, data, Batching(size, shuffle=False), opts)
    assert bool((res.batches.diagnostics["lanczos_steps"] == 0).all())
    D = dense_batch(case.model, case.X, case.Y)
    A = D.A
    eps = 1e-3 * torch.linalg.eigvalsh(A)[-1]
    M = torch.linalg.solve(A + eps * torch.eye(A.shape[0], dtype=A.dtype), D.J.T)
    bias = defense.bias(D.g[None])[0]
    var = float(defense.noise_variance(D.g[None])[0])
    parts = (var * M.pow(2).sum(1) + (M @ bias).pow(2)).reshape(size, -1).sum(1)
    got = res.batches.diagnostics["i2f_blocks"][0].pow(2)
    torch.testing.assert_close(got, parts, rtol=1e-10, atol=0)
    assert float(res.batches.scores["i2f"][0]) ** 2 == pytest.approx(float(parts.sum()), rel=1e-10)


def test_plans_needing_only_lambda_max_go_dense_only_for_smaller_inputs() -> None:
    """λ_max alone costs a few dozen Lanczos products: dense only for d ≤ dense_max_dim/4."""
    case = make_case("lenet-1ch", n=2)
    d = case.X[0].numel()
    cheap = ("lavp_l2_max", "i2f_lb")
    off = scan(case, scores=cheap, dense_max_dim=4 * d - 1)
    assert bool((off.diagnostics["lanczos_steps"] > 0).all())
    on = scan(case, scores=cheap, dense_max_dim=4 * d, dtype=torch.float64)
    assert on.products == 2 * d and bool((on.diagnostics["lanczos_steps"] == 0).all())
    want = truth(dense(case.model, case.X[0], case.Y[0]), GaussianNoise(SIGMA))
    assert float(on.scores["i2f_lb"][0]) == pytest.approx(want["i2f_lb"], rel=1e-10)
    # a λ_min end makes the plan costly: dense up to dense_max_dim itself
    assert scan(case, scores=("lavp_l2_min",), dense_max_dim=d).products == 2 * d


def test_dense_max_dim_is_configured_and_an_accuracy_setting() -> None:
    assert ScoresConfig(dense_max_dim=0).options().dense_max_dim == 0
    assert ScoresConfig().options().dense_max_dim == ScoreOptions().dense_max_dim
    assert "dense_max_dim" in ACCURACY_SETTINGS
    with pytest.raises(OptionError, match="dense_max_dim"):
        ScoreOptions(dense_max_dim=-1)
