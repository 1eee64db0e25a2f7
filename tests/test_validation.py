"""``validate``: selection, plumbing (defence, quality, agreement), report reuse, figure
and CLI, on the DLG LeNet and real digits at small budgets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import typer
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from leakaudit.attacks import attack_config
from leakaudit.cli.validate import validate_command
from leakaudit.defenses import GaussianNoise
from leakaudit.metrics.quality import psnr
from leakaudit.models import build_model
from leakaudit.report.plots import validation_figure
from leakaudit.scores.engine import score_samples
from leakaudit.scores.names import ALL_SCORES
from leakaudit.scores.options import ScoreOptions
from leakaudit.scores.risk import DEFAULT_RISK_SCORE, resolve_risk
from leakaudit.validation import (
    ValidationResult,
    stratified_indices,
    validate,
    validate_report,
)

QUICK = {"dlg": attack_config("dlg", "fast"), "ig": attack_config("ig", "fast")}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def lenet(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(
        "lenet", num_classes=10, in_channels=1, image_size=16, kwargs={"init": "dlg"}
    ).eval()


def digits16(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits()
    x = torch.tensor(d.images[:n] / 16.0, dtype=torch.float32)[:, None]
    x = F.interpolate(x, size=16, mode="bilinear", align_corners=False).clamp(0, 1)
    return x, torch.tensor(d.target[:n]).long()


def test_stratified_selection_takes_one_sample_per_risk_stratum() -> None:
    risk = torch.randperm(100, generator=torch.Generator().manual_seed(0)).double()
    risk[7] = float("nan")
    picked = stratified_indices(risk, 9, seed=3)
    assert picked.numel() == 9 and 7 not in picked.tolist()
    ranks = torch.argsort(torch.argsort(-torch.nan_to_num(risk, nan=-1.0)))[picked]
    # 99 finite samples in 9 strata of 11 ranks: the j-th pick comes from stratum j.
    assert torch.equal(ranks // 11, torch.arange(9))
    assert torch.all(risk[picked][:-1] >= risk[picked][1:])  # riskiest first
    assert torch.equal(stratified_indices(risk, 9, seed=3), picked)
    assert stratified_indices(risk, 500).numel() == 99


@pytest.fixture(scope="module")
def engine_case() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, dict, ValidationResult]:
    """Engine scores under σ = 0.01 and a fast validation under the same defence."""
    model, (x, y) = lenet(), digits16(8)
    defense = GaussianNoise(0.01)
    scored = score_samples(model, (x, y), ScoreOptions(defense=defense, device="cpu"))
    result = validate(
        model,
        x,
        y,
        scored.scores,
        attacks=("dlg", "ig"),
        defense=defense,
        budget="fast",
        n_samples=6,
        seed=0,
        n_resamples=200,
    )
    return model, x, y, scored.scores, result


def test_validate_end_to_end_with_engine_scores(engine_case) -> None:
    _, x, _, scores, result = engine_case
    n = len(result.indices)
    assert n == 6
    torch.testing.assert_close(result.originals, x[result.indices])  # identity space
    assert result.risk_score == DEFAULT_RISK_SCORE == "grad_norm"  # higher is riskier
    risk = scores["grad_norm"][result.indices]
    assert torch.all(risk[:-1] >= risk[1:])
    for attack in ("dlg", "ig"):
        rec = result.reconstructions[attack]
        assert rec.shape == (n, 1, 16, 16) and rec.min() >= 0 and rec.max() <= 1
        torch.testing.assert_close(result.quality[attack]["psnr"], psnr(rec, result.originals))
    assert len(result.agreement) == len(ALL_SCORES) * 2 * 3  # scores × attacks × metrics
    for attack, summary in result.summary.items():
        rows = [
            a
            for a in result.agreement
            if a.attack == attack and a.metric == "psnr" and a.spearman.value is not None
        ]
        best = max(rows, key=lambda a: abs(a.spearman.value or 0.0))
        assert summary["best_score"] == best.score and best.score in summary["sentence"]
    doc = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert doc["n_samples"] == 6 and doc["defense"] == {"kind": "gaussian", "sigma": 0.01}
    assert set(doc["samples"][0]["attacks"]["ig"]) >= {"mse", "psnr", "ssim", "label"}
    assert doc["attack_configs"]["ig"]["iterations"] == 200


def test_validation_figure_is_a_png(engine_case, tmp_path: Path) -> None:
    out = validation_figure(engine_case[-1], tmp_path / "v.png", n_show=2)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_attacker_sees_the_defended_gradient() -> None:
    model, (x, y) = lenet(), digits16(4)
    scores = {"grad_norm": torch.arange(4.0)}
    quality = {}
    for sigma in (0.0, 5.0):
        res = validate(
            model,
            x,
            y,
            scores,
            attacks=("ig",),
            defense=GaussianNoise(sigma),
            attack_configs=QUICK,
            selection=[0, 1, 2, 3],
            n_resamples=50,
        )
        quality[sigma] = res.quality["ig"]["psnr"].mean()
    assert quality[0.0] - quality[5.0] > 10.0, quality


def test_constant_score_gives_undefined_agreement_and_no_best_score() -> None:
    model, (x, y) = lenet(), digits16(4)
    cfg = {"ig": attack_config("ig", "fast", iterations=5)}
    res = validate(
        model,
        x,
        y,
        {"grad_norm": torch.ones(4)},
        attacks=("ig",),
        attack_configs=cfg,
        selection=[3, 1, 2],
        n_resamples=50,
    )
    assert all(a.spearman.value is None and a.direction == "undefined" for a in res.agreement)
    assert res.summary["ig"]["best_score"] is None
    assert sorted(res.indices.tolist()) == [1, 2, 3]
    doc = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert doc["agreement"][0]["spearman"]["undefined"].startswith("the score is constant")


def test_a_resolved_risk_is_used_as_given() -> None:
    model, (x, y) = lenet(), digits16(4)
    scores = {"grad_norm": torch.arange(4.0), "i2f": torch.arange(4.0)}
    risk = resolve_risk("i2f", {"grad_norm": "lower_is_riskier"}, available=scores)
    res = validate(
        model,
        x,
        y,
        scores,
        attacks=("ig",),
        attack_configs={"ig": attack_config("ig", "fast", iterations=2)},
        selection=[2, 0, 1],
        risk=risk,
        n_resamples=10,
    )
    assert res.risk_score == "i2f"
    assert res.directions == {"grad_norm": "lower_is_riskier", "i2f": "lower_is_riskier"}
    assert res.indices.tolist() == [0, 1, 2]  # riskiest first: the lowest i2f
    with pytest.raises(ValueError, match="either risk or risk_score"):
        validate(model, x, y, scores, risk=risk, risk_score="i2f")
    with pytest.raises(ValueError, match="not among the given scores"):
        validate(model, x, y, {"grad_norm": scores["grad_norm"]}, risk=risk)


def test_bad_arguments_name_the_problem() -> None:
    model, (x, y) = lenet(), digits16(4)
    scores = {"grad_norm": torch.arange(4.0)}
    with pytest.raises(ValueError, match="unknown attack"):
        validate(model, x, y, scores, attacks=("gan",))
    with pytest.raises(ValueError, match="unknown score"):
        validate(model, x, y, {"lavp": torch.ones(4)})
    with pytest.raises(ValueError, match="indices must be"):
        validate(model, x, y, scores, selection=[0, 9])


def fake_report(scores: np.ndarray, labels: torch.Tensor) -> dict:
    """A scan report as ``Report.to_dict()`` lays it out (only the keys validate reads)."""
    return {
        "config": {"scores": {"directions": {}}},
        "risk": {"score": "grad_norm", "direction": "higher_is_riskier"},
        "samples": [
            {
                "index": int(i),
                "id": f"img{i}",
                "label": int(labels[i]),
                "scores": {
                    "grad_norm": float(scores[i]),
                    "i2f": None if i == 0 else float(-scores[i]),
                },
            }
            for i in range(len(scores))
        ],
    }


def test_validate_report_reuses_the_reports_scores_and_positions() -> None:
    model, (x, y) = lenet(), digits16(10)
    dataset = list(zip(x, y.tolist(), strict=True))
    values = np.array([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 0.5, 6.0, 4.0])
    report = fake_report(values, y)
    res = validate_report(
        model,
        dataset,
        report,
        n_samples=5,
        seed=1,
        attacks=("ig",),
        attack_configs={"ig": attack_config("ig", "fast", iterations=5)},
        n_resamples=50,
    )
    got = res.indices.tolist()
    assert len(got) == 5 and got[0] in (2, 6)  # the top stratum of 2 holds ranks 1-2
    torch.testing.assert_close(res.scores["grad_norm"], torch.tensor(values[got]))
    assert res.ids == [f"img{i}" for i in got]
    torch.testing.assert_close(res.originals, x[got])
    assert any("i2f" in n for n in res.notes) or 0 not in got  # sample 0 has no i2f
    with pytest.raises(ValueError, match="not in the scan report"):
        validate_report(model, dataset, report, indices=[42])


def test_cli_validates_a_scan_report(tmp_path: Path) -> None:
    from leakaudit import api
    from leakaudit.config import config_from_dict

    torch.manual_seed(0)
    model = build_model("lenet", num_classes=10, in_channels=1, image_size=8)
    ckpt = tmp_path / "lenet.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    cfg = config_from_dict(
        {
            "model": {"name": "lenet", "num_classes": 10, "checkpoint": str(ckpt)},
            "data": {"kind": "digits", "first": 10},
            "scores": {"select": ["grad_norm", "i2f"], "risk_score": "i2f", "max_iter": 20},
        }
    )
    report_path = tmp_path / "scan.json"
    report_path.write_text(json.dumps(api.scan(cfg).to_dict()))
    app = typer.Typer()
    app.command()(validate_command)
    runner = CliRunner()
    args = [
        "--report",
        str(report_path),
        "--budget",
        "fast",
        "--attacks",
        "ig",
        "--n-samples",
        "4",
        "--no-progress",
        "--device",
        "cpu",
    ]
    out_json = tmp_path / "v.json"
    res = runner.invoke(app, [*args, "--json", str(out_json), "--figure", str(tmp_path / "f.png")])
    assert res.exit_code == 0, res.output
    doc = json.loads(out_json.read_text())["validation"]
    assert doc["n_samples"] == 4 and doc["scores_from"] == "scan report"
    assert "strongest rank correlation" in res.output or "no score" in res.output
    assert (tmp_path / "f.png").exists()
    bad = runner.invoke(app, [*args, "--attacks", "gan"])
    assert bad.exit_code == 2 and "unknown attack" in bad.output
    # Without --report the same command scores the data itself.
    fresh = runner.invoke(
        app,
        [
            "--data-kind",
            "digits",
            "--first",
            "8",
            "--model",
            "lenet",
            "--num-classes",
            "10",
            "--checkpoint",
            str(ckpt),
            "--budget",
            "fast",
            "--attacks",
            "ig",
            "--n-samples",
            "4",
            "--no-progress",
            "--device",
            "cpu",
            "--json",
            str(out_json),
        ],
    )
    assert fresh.exit_code == 0, fresh.output
    assert json.loads(out_json.read_text())["validation"]["scores_from"] == "scored now"
