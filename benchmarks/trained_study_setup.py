"""The trained-model study's settings: data split, architectures, training, checkpoints.

A *setting* is one architecture × one seed × one attack budget (and defence). The seed
draws the model's initial weights, the training order and the samples attacked (from
the held-out test split). Everything uses scikit-learn's 8×8 digits, shipped with the
package: nothing is downloaded.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor, nn

from leakaudit.models import build_model

#: The digits split: 75% train, 25% test, stratified, fixed (seed 0) for every setting.
TEST_FRACTION = 0.25


@dataclass(frozen=True)
class Setting:
    """One cell of the study.

    Attributes:
        arch: ``"mlp"`` (Linear 64→hidden, ReLU, Linear → 10), ``"cnn"`` (two 3×3 ReLU
            convolutions of 16 channels, the second with stride 2, and a linear head on
            the flattened 4×4 map), or ``"convnet"`` (leakaudit's built-in ReLU ConvNet,
            width 8, depth 2, no BatchNorm, global average pooling).
        seed: initial weights, training order, the drawn test samples, noise, attacks.
        n: test samples scored and attacked.
        sigma: Gaussian noise σ added to the shared gradient (0: undefended).
        idlg_iters: L-BFGS iterations of iDLG.
        ig_iters: Adam iterations of Inverting Gradients (one restart).
        epochs: training epochs (Adam, batch 32).
        hidden: MLP hidden width.
        n_probes: I²F trace probes.
        n_resamples: bootstrap resamples of each interval.
    """

    arch: str
    seed: int
    n: int
    sigma: float
    idlg_iters: int
    ig_iters: int
    epochs: int = 40
    hidden: int = 32
    n_probes: int = 4
    n_resamples: int = 999

    @property
    def name(self) -> str:
        noise = f"-noise{self.sigma:g}" if self.sigma else ""
        return f"{self.arch}-s{self.seed}{noise}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"name": self.name}


def split() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Digits ``[N, 1, 8, 8]`` in [0, 1] and labels: ``(x_train, y_train, x_test, y_test)``."""
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    xtr, xte, ytr, yte = train_test_split(
        x, d.target, test_size=TEST_FRACTION, random_state=0, stratify=d.target
    )
    as_t = torch.from_numpy
    return as_t(xtr), as_t(ytr).long(), as_t(xte), as_t(yte).long()


def make_model(setting: Setting) -> nn.Module:
    """The untrained model of the setting, seeded."""
    torch.manual_seed(setting.seed)
    if setting.arch == "mlp":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, setting.hidden),
            nn.ReLU(),
            nn.Linear(setting.hidden, 10),
        )
    if setting.arch == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(16 * 4 * 4, 10),
        )
    if setting.arch == "convnet":
        kwargs = {"width": 8, "depth": 2, "batchnorm": False}
        return build_model("convnet", num_classes=10, in_channels=1, image_size=8, kwargs=kwargs)
    raise ValueError(f"unknown arch {setting.arch!r}; choose mlp or cnn")


def train(setting: Setting, x: Tensor, y: Tensor, model: nn.Module | None = None) -> nn.Module:
    """Train the setting's model (or ``model``, initialised by the caller) on ``(x, y)``
    with Adam (lr 1e-2, batch 32), seeded."""
    model = make_model(setting) if model is None else model
    gen = torch.Generator().manual_seed(setting.seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, setting.epochs)
    model.train()
    for _ in range(setting.epochs):
        for idx in torch.randperm(len(y), generator=gen).split(32):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``."""
    return float((model(x).argmax(1) == y).double().mean())


def shipped(setting: Setting, model: nn.Module) -> nn.Module:
    """The model as a client ships it: saved as safetensors and loaded back."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{setting.name}.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        fresh = make_model(setting)
        fresh.load_state_dict(load_file(str(path)))
    return fresh.eval()


def draw(setting: Setting, n_test: int) -> np.ndarray:
    """``setting.n`` test positions drawn without replacement by the setting's seed."""
    rng = np.random.default_rng(1000 + setting.seed)
    return np.sort(rng.choice(n_test, size=min(setting.n, n_test), replace=False))


def full_settings() -> list[Setting]:
    """The full study: MLP and CNN undefended, and the MLP under Gaussian noise σ = 1e-3,
    each with seeds 0, 1 and 2, N = 100; iDLG at the ``standard`` budget (300 L-BFGS
    iterations), IG at ``fast`` (200 Adam iterations, which the pilot found recovers part
    of the samples). See docs/reproduction.md, "Trained models"."""
    return [
        Setting(arch, seed, n=100, sigma=sigma, idlg_iters=300, ig_iters=200)
        for arch, sigma in (("mlp", 0.0), ("cnn", 0.0), ("mlp", 1e-3))
        for seed in (0, 1, 2)
    ]


def quick_settings() -> list[Setting]:
    """One tiny setting per architecture: checks the pipeline, not the claims."""
    return [
        Setting(arch, 0, n=16, sigma=0.0, idlg_iters=3, ig_iters=100, epochs=3, n_resamples=99)
        for arch in ("mlp", "cnn")
    ]
