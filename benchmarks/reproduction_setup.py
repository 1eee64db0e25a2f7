"""The reproduction study's settings: data, models and attack budgets per setting.

A *setting* is one architecture × one dataset. Everything here is deterministic for a
seed and uses only data shipped inside installed packages (scikit-learn's digits,
scikit-image's sample photographs); nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import Tensor, nn

from benchmarks._data import photo_patches
from leakaudit.models import build_model

#: Architectures and datasets of the full study, in report order.
ARCHS: tuple[str, ...] = ("lenet", "resnet20")
DATASETS: tuple[str, ...] = ("digits", "photos")

#: Target per-pixel RMSE (images in [0, 1]) that I²F should predict for the median
#: sample under the study's Gaussian noise: 0.1, i.e. a predicted PSNR of 20 dB —
#: visibly degraded but recognisable.
NOISE_TARGET_RMSE = 0.1


@dataclass(frozen=True)
class Setting:
    """One architecture × dataset cell of the study and how it is run.

    Attributes:
        arch: ``"lenet"`` (DLG LeNet, DLG init) or ``"resnet20"`` (CIFAR ResNet-20).
        dataset: ``"digits"`` (scikit-learn) or ``"photos"`` (scikit-image patches).
        n: samples scored and attacked.
        image_size: side of the square inputs.
        idlg_iters: L-BFGS iterations of iDLG (undefended and under noise).
        ig_iters: Adam iterations of Inverting Gradients (one restart).
        n_probes: random probes of the I²F trace estimators.
        max_iter: Lanczos steps at most per operator.
        n_resamples: bootstrap resamples of each rank correlation.
        seed: seeds the model's weights, the engine, the noise and the attacks.
    """

    arch: str
    dataset: str
    n: int
    image_size: int
    idlg_iters: int
    ig_iters: int
    n_probes: int
    max_iter: int = 80
    n_resamples: int = 1000
    seed: int = 0

    @property
    def name(self) -> str:
        return f"{self.arch}-{self.dataset}"

    @property
    def channels(self) -> int:
        return 1 if self.dataset == "digits" else 3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"name": self.name, "channels": self.channels}


def full_settings(n: int = 100) -> list[Setting]:
    """The full study (measured to fit ~40 min on 2 shared CPU cores; docs/reproduction.md).

    LeNet: digits upsampled to 16×16, photo patches at 32×32; iDLG 500 iterations, IG
    1000. ResNet-20 (16×16 inputs for both datasets — 32×32 costs ~2× more per sample in
    the scan and the attacks): iDLG 40 iterations (it stalls after ~30 on this model),
    IG 300; 2 I²F probes instead of 8 to halve the scan.
    """
    return [
        Setting("lenet", "digits", n, 16, idlg_iters=500, ig_iters=1000, n_probes=8),
        Setting("lenet", "photos", n, 32, idlg_iters=500, ig_iters=1000, n_probes=8),
        Setting("resnet20", "digits", n, 16, idlg_iters=40, ig_iters=300, n_probes=2),
        Setting("resnet20", "photos", n, 16, idlg_iters=40, ig_iters=300, n_probes=2),
    ]


def quick_settings(n: int = 6) -> list[Setting]:
    """Every setting at a tiny size and budget: checks the pipeline, not the claims."""
    return [
        Setting(s.arch, s.dataset, n, s.image_size, 5, 10, 2, max_iter=24, n_resamples=200)
        for s in full_settings(n)
    ]


def load_data(setting: Setting) -> tuple[Tensor, Tensor]:
    """The setting's ``n`` samples: images ``[n, C, s, s]`` in [0, 1] and labels ``[n]``.

    Digits: the first ``n`` of scikit-learn's 1,797 8×8 digits (classes cycle 0–9 in
    that order), pixel values /16, bilinearly upsampled to ``s``×``s``, one channel.
    Photos: ``n`` random ``s``×``s`` RGB patches of six scikit-image sample photographs
    resized to 256×256; the label is the source photograph (6 of the 10 classes).
    """
    if setting.dataset == "digits":
        d = load_digits()
        if setting.n > len(d.target):
            raise ValueError(f"digits has {len(d.target)} samples, asked for {setting.n}")
        x = torch.tensor(d.images[: setting.n] / 16.0, dtype=torch.float32)[:, None]
        x = F.interpolate(x, size=setting.image_size, mode="bilinear", align_corners=False)
        return x.clamp(0, 1), torch.tensor(d.target[: setting.n]).long()
    if setting.dataset == "photos":
        return photo_patches(setting.n, setting.image_size, seed=setting.seed)
    raise ValueError(f"unknown dataset {setting.dataset!r}; choose from {DATASETS}")


def make_model(setting: Setting) -> nn.Module:
    """The untrained model of the setting, seeded, in eval mode, 10 classes.

    LeNet uses the DLG initialisation (every weight and bias from U(−0.5, 0.5)); the
    ResNet-20 keeps PyTorch's default initialisation, and its BatchNorm layers use
    their fresh running statistics (mean 0, variance 1) in eval mode.
    """
    torch.manual_seed(setting.seed)
    kwargs = {"init": "dlg"} if setting.arch == "lenet" else {}
    model = build_model(
        setting.arch,
        num_classes=10,
        in_channels=setting.channels,
        image_size=setting.image_size,
        kwargs=kwargs,
    )
    return model.eval()
