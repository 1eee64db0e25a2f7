"""Multi-step FedAvg updates: the scores of u(x) = Σ_k ∇ℓ(θ_k; x) over E local steps
against a dense float64 Jacobian built with plain autograd (create_graph) instead of
torch.func."""

import json
from dataclasses import replace

import pytest
import torch
import yaml
from safetensors.torch import load_file
from sklearn.datasets import load_digits
from torch.func import functional_call
from typer.testing import CliRunner

from leakaudit.api import score_options
from leakaudit.cli import app
from leakaudit.config import config_to_dict, with_overrides
from leakaudit.defenses import GaussianNoise
from leakaudit.demo import DEMO_CHECKPOINT, DEMO_MEAN, DEMO_STD, demo_config
from leakaudit.errors import ConfigError, InputError
from leakaudit.models.lenet import LeNet
from leakaudit.scores.engine import score_samples
from leakaudit.scores.losses import stable_cross_entropy
from leakaudit.scores.options import ScoreOptions
from tests.ground_truth import Dense, make_case
from tests.helpers_cli import assert_refused


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


# --- `scan --local-steps E --local-lr η` ---------------------------------------------------

IDX = [3, 17, 40, 99]
DEMO_SMALL = {"data.indices": IDX, "data.first": None, "data.per_class": None,
              "scores.select": ["grad_norm", "lavp_l2_max", "i2f"], "scores.max_iter": 12,
              "scores.n_probes": 2}  # fmt: skip


def _demo_yaml(tmp_path, **extra) -> str:
    cfg = with_overrides(demo_config(), {**DEMO_SMALL, **extra})
    path = tmp_path / "scan.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    return str(path)


def _cli_scores(tmp_path, *flags: str) -> dict[str, list[float]]:
    out = tmp_path / f"report{len(list(tmp_path.iterdir()))}.json"
    args = ["scan", "--config", _demo_yaml(tmp_path), "--no-progress", "--json", str(out)]
    result = CliRunner().invoke(app, [*args, *flags])
    assert result.exit_code in (0, 1), result.output  # 1: the demo's own gate
    doc = json.loads(out.read_text())
    assert [s["id"] for s in doc["samples"]] == [f"index:{i}" for i in IDX]
    steps = doc["config"]["scores"]["local_steps"]
    names = doc["samples"][0]["scores"]
    return {"local_steps": [steps], **{k: [s["scores"][k] for s in doc["samples"]] for k in names}}


def test_scan_local_steps_flag_equals_the_python_api(tmp_path) -> None:
    """The CLI's numbers for E = 2 are the engine's, on inputs built independently from
    scikit-learn and safetensors (as tests/test_api_scan.py builds them)."""
    digits = load_digits()
    X = torch.tensor(digits.images[IDX] / 16.0, dtype=torch.float32)[:, None]
    X, Y = (X - DEMO_MEAN) / DEMO_STD, torch.tensor(digits.target[IDX])
    model = LeNet(num_classes=10, in_channels=1, image_size=8)
    model.load_state_dict(load_file(str(DEMO_CHECKPOINT)))
    plain = score_options(with_overrides(demo_config(), DEMO_SMALL))
    assert plain.local_steps == 1
    want = score_samples(model, (X, Y), replace(plain, local_steps=2, local_lr=0.5))
    got = _cli_scores(tmp_path, "--local-steps", "2", "--local-lr", "0.5")
    assert got.pop("local_steps") == [2]  # the report's config records it
    assert sorted(got) == sorted(want.scores)
    for name, values in want.scores.items():
        assert got[name] == pytest.approx(values.tolist(), rel=1e-6), name
    # Not the gradient's scores: the flag changed what was scored.
    one = score_samples(model, (X, Y), plain)
    assert got["grad_norm"] != pytest.approx(one.scores["grad_norm"].tolist(), rel=1e-3)


def test_scan_one_local_step_is_the_plain_scan(tmp_path) -> None:
    plain = _cli_scores(tmp_path)
    one = _cli_scores(tmp_path, "--local-steps", "1", "--local-lr", "3")
    assert one == plain


@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (["--local-steps", "0"], ("scores.local_steps", ">= 1")),
        (["--local-steps", "-2"], ("scores.local_steps", ">= 1")),
        (["--local-steps", "2", "--local-lr", "0"], ("scores.local_lr", "> 0")),
        (["--local-steps", "2", "--local-lr", "-0.1"], ("scores.local_lr", "> 0")),
        (["--local-steps", "2", "--calibration", "c.json"], ("scores.local_steps", "calibration")),
    ],
)
def test_scan_refuses_bad_local_steps(flags: list[str], needles: tuple[str, ...]) -> None:
    assert_refused(CliRunner().invoke(app, ["scan", "--demo", *flags]), *needles)


def test_scan_refuses_local_steps_with_the_autograd_backend(tmp_path) -> None:
    config = _demo_yaml(tmp_path, **{"scores.backend": "autograd"})
    result = CliRunner().invoke(app, ["scan", "--config", config, "--local-steps", "2"])
    assert_refused(result, "scores.local_steps", "torch.func")
    with pytest.raises(ConfigError, match=r"local_steps.*torch\.func"):
        with_overrides(demo_config(), {"scores.backend": "autograd", "scores.local_steps": 3})


@pytest.mark.parametrize("command", ["validate", "calibrate"])
def test_attack_commands_refuse_local_steps(tmp_path, command: str) -> None:
    """validate and calibrate judge scores by attacks on one gradient: an update's scores
    would be judged against the wrong attack."""
    config = _demo_yaml(tmp_path, **{"scores.local_steps": 2})
    result = CliRunner().invoke(app, [command, "--config", config, "--no-progress"])
    assert_refused(result, "scores.local_steps", "one gradient")
