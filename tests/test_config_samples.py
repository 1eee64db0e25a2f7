"""Every sample config parses, and runs on small real data laid out where it expects."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from leakaudit.api import scan
from leakaudit.config import load_config, with_overrides
from leakaudit.io.checkpoints import sha256_file
from leakaudit.models import build_model
from tests.helpers_io import (
    astronaut_patches,
    digit_images,
    write_cifar,
    write_imagefolder,
    write_mnist,
)

SAMPLES = Path(__file__).resolve().parent.parent / "sample_configs"
CONFIGS = sorted(p.name for p in SAMPLES.glob("*.yaml"))
FAST = {"scores.max_iter": 4, "scores.n_probes": 1, "output.json": None}


def test_every_input_kind_has_a_sample() -> None:
    kinds = {load_config(SAMPLES / c).data.kind for c in CONFIGS}
    assert {"imagefolder", "cifar10", "mnist", "tensors"} <= kinds
    models = {load_config(SAMPLES / c).model.name.rsplit("/", 1)[-1] for c in CONFIGS}
    assert "torchvision:resnet18" in models and "my_model.py:build" in models
    roots = {Path(load_config(SAMPLES / c).data.root or "").suffix for c in CONFIGS}
    assert {".pt", ".npz"} <= roots


def make_data(cfg, root: Path) -> None:
    """Real images where ``cfg`` looks for them: astronaut patches or scikit-learn digits."""
    if cfg.data.kind == "digits":  # ships with scikit-learn
        return
    data = Path(cfg.data.root)
    labels = np.array([0, 1, 2, 0, 1, 2])
    if cfg.data.kind == "imagefolder":
        write_imagefolder(data, astronaut_patches(6, 32), labels)
    elif cfg.data.kind == "cifar10":
        write_cifar(data, astronaut_patches(6, 32), labels)
    elif cfg.data.kind == "mnist":
        images, digit_labels = digit_images(6)
        big = np.kron(images * 15, np.ones((4, 4), dtype=np.uint8))[:, 2:30, 2:30]
        write_mnist(data, np.ascontiguousarray(big[:, :28, :28]), digit_labels)
    else:
        images, digit_labels = digit_images(8)
        x = (images[:, None] / 16.0).astype(np.float32)
        data.parent.mkdir(parents=True, exist_ok=True)
        if data.suffix == ".npz":
            np.savez(data, x=x, y=digit_labels)
        else:
            torch.save({"x": torch.from_numpy(x), "y": torch.from_numpy(digit_labels)}, data)


def make_weights(cfg, num_classes: int, shape: tuple[int, ...]) -> None:
    if not cfg.model.checkpoint or Path(cfg.model.checkpoint).is_file():  # none, or shipped
        return
    torch.manual_seed(0)
    model = build_model(cfg.model.name, num_classes=num_classes, in_channels=shape[0],
                        image_size=shape[-1], kwargs=cfg.model.kwargs)  # fmt: skip
    path = Path(cfg.model.checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": state}, path)  # nested, as Lightning saves it


@pytest.mark.parametrize("name", CONFIGS)
def test_sample_config_runs_on_real_data(name: str, tmp_path: Path) -> None:
    shutil.copytree(SAMPLES, tmp_path, dirs_exist_ok=True)
    cfg = load_config(tmp_path / name)
    make_data(cfg, tmp_path)
    from leakaudit.io.datasets import DataSpec, load_dataset

    probe = with_overrides(cfg, FAST)
    spec = {k: getattr(probe.data, k) for k in ("kind", "root", "split", "resize", "channels")}
    loaded = load_dataset(DataSpec(**spec, first=1))
    classes = cfg.model.num_classes or loaded.num_classes
    make_weights(cfg, classes, loaded.input_shape)
    subset = {"data.indices": [0, 1], "data.first": None, "data.per_class": None}
    if cfg.model.name.startswith("torchvision:"):  # 11M parameters: the cheap scores only
        subset |= {"scores.select": ["grad_norm", "lavp_l2_max"], "scores.risk_score": "grad_norm"}
    report = scan(with_overrides(cfg, {**FAST, **subset}))
    assert report.summary["num_samples"] == 2
    assert all(np.isfinite(s.scores[report.risk["score"]]) for s in report.samples)
    if cfg.model.checkpoint:
        assert report.model["checkpoint"]["sha256"] == sha256_file(cfg.model.checkpoint)
