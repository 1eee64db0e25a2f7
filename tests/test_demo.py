"""The embedded demo: ``leakaudit scan --demo`` (the README's first command) on the shipped
checkpoint, which really is the trained model its metadata describes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from leakaudit.cli import app
from leakaudit.demo import DEMO_CHECKPOINT, DEMO_MEAN, DEMO_PER_CLASS, DEMO_STD, TRAIN_SIZE
from leakaudit.io.checkpoints import sha256_file
from leakaudit.models.lenet import LeNet
from leakaudit.report.schema import schema_errors


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo") / "report.json"
    result = CliRunner().invoke(app, ["scan", "--demo", "--json", str(out)])
    return result, json.loads(out.read_text()) if out.exists() else None


@pytest.mark.slow
def test_demo_passes_its_gate_and_writes_a_valid_report(demo_run) -> None:
    result, report = demo_run
    assert result.exit_code == 0, result.output
    assert schema_errors(report) == []
    assert report["summary"]["num_samples"] == 10 * DEMO_PER_CLASS
    assert report["gate"]["passed"] and len(report["gate"]["rules"]) == 1
    assert "Top 10 riskiest samples" in result.stdout and "gate passed" in result.stderr
    assert report["model"]["checkpoint"]["sha256"] == sha256_file(DEMO_CHECKPOINT)


@pytest.mark.slow
def test_demo_ranking_is_meaningful(demo_run) -> None:
    _, report = demo_run
    samples = report["samples"]
    labels = [s["label"] for s in samples]
    assert sorted(set(labels)) == list(range(10))
    assert all(labels.count(k) == DEMO_PER_CLASS for k in range(10))
    assert report["risk"]["score"] == "grad_norm"
    risk = np.array([s["scores"]["grad_norm"] for s in samples])
    assert np.isfinite(risk).all()
    assert len(np.unique(risk)) == len(risk)  # a strict order, no wholesale ties
    assert risk.max() / risk.min() > 10  # samples differ by orders of magnitude
    top = min(samples, key=lambda s: s["rank"])
    # The default risk score (reproduction study): grad_norm, larger is riskier.
    assert top["percentile"] == 100 and top["scores"]["grad_norm"] == risk.max()
    conv = [s["diagnostics"]["converged"] for s in samples]
    assert all(conv)  # float32 with the cancellation-free loss: every sample converges
    sigma = [s["sigma_needed"] for s in samples]
    assert report["whatif"]["sigma_dataset"] == pytest.approx(max(sigma))


def test_shipped_checkpoint_matches_its_recorded_accuracy() -> None:
    meta = json.loads(DEMO_CHECKPOINT.with_suffix(".json").read_text())
    assert DEMO_CHECKPOINT.stat().st_size < 300_000
    assert meta["sha256"] == sha256_file(DEMO_CHECKPOINT)
    digits = load_digits()
    X = torch.tensor(digits.images[TRAIN_SIZE:] / 16.0, dtype=torch.float32)[:, None]
    X = (X - DEMO_MEAN) / DEMO_STD
    model = LeNet(num_classes=10, in_channels=1, image_size=8)
    model.load_state_dict(load_file(str(DEMO_CHECKPOINT)))
    with torch.no_grad():
        acc = (model(X).argmax(1).numpy() == digits.target[TRAIN_SIZE:]).mean()
    assert acc == pytest.approx(meta["test_accuracy"], abs=1e-4)
    assert acc > 0.85 and meta["test_samples"] == len(X)
