"""``leakaudit.api.scan``: the wiring (weights, data, normalisation, subset, options) gives
the engine's numbers on tensors built independently from scikit-learn and safetensors."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from sklearn.datasets import load_digits
from torch import nn

from leakaudit.api import check_compatible, scan, score_options
from leakaudit.config import with_overrides
from leakaudit.demo import DEMO_CHECKPOINT, DEMO_MEAN, DEMO_STD, demo_config
from leakaudit.errors import ConfigError, InputError
from leakaudit.models.lenet import LeNet
from leakaudit.report.schema import schema_errors
from leakaudit.scores.engine import score_samples

SMALL = {
    "data.indices": [3, 17, 40, 41, 99, 250],
    "data.first": None,
    "data.per_class": None,
    "scores.select": ["grad_norm", "lavp_l2_max", "lavp_gm", "i2f"],
    "scores.max_iter": 12,
    "scores.n_probes": 2,
}


def small_config(**extra):
    return with_overrides(demo_config(), {**SMALL, **extra})


def test_scan_equals_the_engine_on_independently_built_inputs() -> None:
    cfg = small_config()
    report = scan(cfg)
    digits = load_digits()
    idx = SMALL["data.indices"]
    X = torch.tensor(digits.images[idx] / 16.0, dtype=torch.float32)[:, None]
    X = (X - DEMO_MEAN) / DEMO_STD
    Y = torch.tensor(digits.target[idx])
    model = LeNet(num_classes=10, in_channels=1, image_size=8)
    model.load_state_dict(load_file(str(DEMO_CHECKPOINT)))
    want = score_samples(model, (X, Y), score_options(cfg))
    assert [s.id for s in report.samples] == [f"index:{i}" for i in idx]
    assert [s.label for s in report.samples] == Y.tolist()
    for name, values in want.scores.items():
        got = [s.scores[name] for s in report.samples]
        assert got == pytest.approx(values.tolist(), rel=1e-6), name
    assert report.model["checkpoint"]["format"] == "safetensors"
    assert len(report.model["checkpoint"]["sha256"]) == 64
    assert report.model["parameters"] == sum(p.numel() for p in model.parameters())
    assert report.summary["num_samples"] == len(idx)
    assert schema_errors(report.to_dict()) == []


def test_scan_accepts_a_mapping_and_names_bad_keys() -> None:
    with pytest.raises(ConfigError, match=r"data\.per_clas"):
        scan({"data": {"kind": "digits", "per_clas": 3}})


def test_progress_reports_done_and_total() -> None:
    seen: list[tuple[int, int]] = []
    scan(small_config(**{"scores.chunk_size": 4}), progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, 6) and seen[-1] == (6, 6)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


class Fixed(nn.Module):
    """A model for 1×8×8 inputs with 3 outputs whatever the config says."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_check_compatible_names_shapes_and_labels() -> None:
    x = torch.zeros(1, 8, 8)
    assert check_compatible(Fixed(), [(x, 0)], torch.tensor([0, 2])) == 3
    with pytest.raises(InputError, match=r"label 5 \(sample 1\) is out of range .* 3 outputs"):
        check_compatible(Fixed(), [(x, 0)], torch.tensor([0, 5]))
    with pytest.raises(InputError, match=r"rejects the data's input shape \(3, 4, 4\)"):
        check_compatible(Fixed(), [(torch.zeros(3, 4, 4), 0)], torch.tensor([0]))


def test_warnings_reach_stderr_and_the_report(tmp_path) -> None:
    import json

    import numpy as np
    from PIL import Image
    from typer.testing import CliRunner

    from leakaudit.cli import app
    from tests.helpers_io import digit_images

    images, _ = digit_images(4)
    root = tmp_path / "data"
    for i, image in enumerate(images):
        folder = root / f"c{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 15).astype(np.uint8)).save(folder / f"{i}.png")
    (root / "c0" / "loop").symlink_to(root, target_is_directory=True)  # skipped, warned
    out = tmp_path / "r.json"
    res = CliRunner().invoke(
        app,
        [
            "scan",
            "--model",
            "lenet",
            "--random-init",
            "--data",
            str(root),
            "--json",
            str(out),
            "--scores",
            "grad_norm",
            "--risk-score",
            "grad_norm",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    printed = [line for line in res.stderr.splitlines() if "links are not followed" in line]
    assert printed, res.stderr
    warned = json.loads(out.read_text())["warnings"]
    assert any("links are not followed" in w and "c0/loop" in w for w in warned), warned
    assert not any(f"'{tmp_path}" in w for w in warned), warned  # paths stay relative
