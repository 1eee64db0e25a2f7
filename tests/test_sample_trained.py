"""The shipped trained sample (sample_configs/digits_mlp.*): it is what its script trains,
it scans data the model never saw, and ``calibrate --demo`` points to it when the demo's
attacks fail. ``leakaudit calibrate`` on it runs in docs/calibration.md (tests/test_docs.py).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from leakaudit.attacks import ig
from leakaudit.cli import app
from leakaudit.config import load_config
from leakaudit.io.checkpoints import sha256_file

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_configs" / "digits_mlp.yaml"


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "train_digits_mlp", ROOT / "scripts/train_digits_mlp.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_checkpoint_is_what_the_script_trains() -> None:
    """Retraining with scripts/train_digits_mlp.py gives the shipped weights (bit for bit on
    the machine that trained them; within 1% per tensor where the CPU's float kernels
    round differently: another seed or split differs by ~100%), a trained model (test
    accuracy as recorded, > 0.95), and the config scans test-split digits only: none of
    them was trained on."""
    script = _script()
    model, test_acc = script.trained()
    shipped = load_file(str(script.CHECKPOINT))
    state = model.state_dict()
    assert sorted(shipped) == sorted(state)
    for k, w in state.items():
        assert torch.linalg.norm(shipped[k] - w) <= 1e-2 * torch.linalg.norm(shipped[k]), k
    meta = json.loads(script.CHECKPOINT.with_suffix(".json").read_text())
    assert meta["sha256"] == sha256_file(script.CHECKPOINT)
    assert test_acc > 0.95 and abs(test_acc - meta["test_accuracy"]) <= 0.01
    cfg = load_config(SAMPLE)
    test = script.test_positions()
    assert cfg.data.indices == test[: script.POOL]
    assert len(set(test)) + meta["train_samples"] == 1797  # the rest trained the model


def test_calibrate_demo_failure_points_to_the_trained_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the demo's attacks recover nothing, calibrate exits 1 and names the sample
    that the attack breaks (2 IG steps recover nothing: a fast stand-in for the demo's
    real failure at `fast`, docs/calibration.md)."""
    monkeypatch.setitem(ig.IG_BUDGETS, "fast", (2, 1))
    out = tmp_path / "c.json"
    res = CliRunner().invoke(app, [
        "calibrate", "--demo", "--attacks", "ig", "--budget", "fast", "--n", "6", "--folds", "2",
        "--device", "cpu", "--no-progress", "-o", str(out),
    ])  # fmt: skip
    assert res.exit_code == 1, res.output
    assert json.loads(out.read_text())["status"] == "attacks_failed"
    assert "sample_configs/digits_mlp.yaml" in res.stderr
    res = CliRunner().invoke(app, [
        "calibrate", "--config", str(SAMPLE), "--attacks", "ig", "--budget", "fast", "--n", "6",
        "--folds", "2", "--device", "cpu", "--no-progress", "-o", str(out),
    ])  # fmt: skip
    assert res.exit_code == 1  # the same failure on a config: no demo hint
    assert "sample_configs" not in res.stderr
