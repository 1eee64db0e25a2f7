"""Reconstruction quality per sample: MSE, PSNR, SSIM, and LPIPS when available locally.

Every function takes images already mapped to [0, 1] (see
:meth:`leakaudit.attacks.space.InputSpace.to_unit`), shaped ``[B, C, H, W]``, and
returns one value per sample. MSE, PSNR and SSIM are scikit-image's
(``skimage.metrics``; SSIM as in Wang et al. 2004, Gaussian-free 7×7 window by
default). LPIPS (Zhang et al. 2018) needs the ``lpips`` package *and* its backbone
weights already on disk; leakaudit never downloads them.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity
from torch import Tensor

from leakaudit.direction import MetricDirection
from leakaudit.registry import Registry

#: MSE floor, so that a perfect reconstruction reports PSNR = 120 dB, not infinity.
MSE_FLOOR = 1e-12


def _pairs(x: Tensor, ref: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Both batches as float64 NumPy arrays, ``[B, ...]`` each."""
    return x.detach().double().cpu().numpy(), ref.detach().double().cpu().numpy()


def mse(x: Tensor, ref: Tensor) -> Tensor:
    """Mean squared error per sample (``skimage.metrics.mean_squared_error``).

    Args:
        x: ``[B, ...]`` reconstructions.
        ref: ``[B, ...]`` originals, the same shape (else ``ValueError``).

    Returns:
        ``[B]`` float64.
    """
    a, b = _pairs(x, ref)
    return torch.tensor([mean_squared_error(b[i], a[i]) for i in range(a.shape[0])])


def psnr(x: Tensor, ref: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio 10·log10(range² / MSE) in dB per sample
    (``skimage.metrics.peak_signal_noise_ratio`` with an explicit ``data_range``), ``[B]``.

    Capped at 10·log10(range² / :data:`MSE_FLOOR`) so an exact reconstruction stays finite.
    """
    a, b = _pairs(x, ref)
    cap = 10.0 * np.log10(data_range**2 / MSE_FLOOR)
    with np.errstate(divide="ignore"):  # MSE 0: skimage returns inf, capped below
        db = [peak_signal_noise_ratio(b[i], a[i], data_range=data_range) for i in range(len(a))]
    return torch.tensor(np.minimum(db, cap), dtype=torch.float64)


def ssim(x: Tensor, ref: Tensor, data_range: float = 1.0) -> Tensor:
    """Structural similarity per sample via ``skimage.metrics.structural_similarity``.

    Args:
        x: ``[B, C, H, W]`` reconstructions.
        ref: ``[B, C, H, W]`` originals.
        data_range: the images' value range.

    Returns:
        ``[B]`` float64 in [−1, 1]. The window is 7×7, or the largest odd size that
        fits images smaller than that.
    """
    a, b = _pairs(x, ref)
    side = min(a.shape[-2], a.shape[-1])
    win = min(7, side if side % 2 == 1 else side - 1)
    out = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        out[i] = structural_similarity(
            np.moveaxis(a[i], 0, -1),
            np.moveaxis(b[i], 0, -1),
            data_range=data_range,
            channel_axis=-1,
            win_size=win,
        )
    return torch.from_numpy(out)


def lpips_status() -> tuple[bool, str]:
    """Whether LPIPS can run without downloading anything, and why not if it cannot.

    Returns:
        ``(available, note)``; the note is empty when available.
    """
    if importlib.util.find_spec("lpips") is None:
        return False, "LPIPS skipped: the 'lpips' package is not installed"
    hub = torch.hub.get_dir()
    ckpt_dir = os.path.join(hub, "checkpoints")
    names = os.listdir(ckpt_dir) if os.path.isdir(ckpt_dir) else []
    if not any(n.startswith("alexnet-") for n in names):
        return False, (
            f"LPIPS skipped: AlexNet backbone weights are not in {ckpt_dir} "
            "(leakaudit never downloads weights)"
        )
    return True, ""


def lpips_distance(x: Tensor, ref: Tensor) -> Tensor:
    """LPIPS (AlexNet) per sample for images in [0, 1]; call only if :func:`lpips_status`.

    Grey images are repeated to three channels. Returns ``[B]`` float64.
    """
    import lpips

    net: Any = lpips.LPIPS(net="alex", verbose=False)
    a, b = x.detach().float().cpu(), ref.detach().float().cpu()
    if a.shape[1] == 1:
        a, b = a.repeat(1, 3, 1, 1), b.repeat(1, 3, 1, 1)
    with torch.no_grad():
        d = net(a * 2 - 1, b * 2 - 1)
    return d.flatten().double()


@dataclass(frozen=True)
class MetricSpec:
    """A reconstruction quality metric and which way is better (as torchmetrics'
    ``Metric.higher_is_better``).

    Attributes:
        name: the JSON name.
        fn: ``fn(reconstructions, originals)`` → ``[B]`` float64, images in [0, 1].
        higher_is_better: larger values mean a better reconstruction.
    """

    name: str
    fn: Callable[[Tensor, Tensor], Tensor]
    higher_is_better: bool

    @property
    def direction(self) -> MetricDirection:
        """``"higher_is_better"`` or ``"lower_is_better"``."""
        return "higher_is_better" if self.higher_is_better else "lower_is_better"


#: Every quality metric, in report order; LPIPS runs only when it is available locally.
METRICS: Registry[MetricSpec] = Registry(
    "metric",
    (
        (spec.name, spec)
        for spec in (
            MetricSpec("mse", mse, higher_is_better=False),
            MetricSpec("psnr", psnr, higher_is_better=True),
            MetricSpec("ssim", ssim, higher_is_better=True),
            MetricSpec("lpips", lpips_distance, higher_is_better=False),
        )
    ),
)


def quality_metrics(
    x: Tensor, ref: Tensor, *, use_lpips: bool = True
) -> tuple[dict[str, Tensor], list[str]]:
    """Every available quality metric of reconstructions against originals in [0, 1].

    Reconstructions are clipped to [0, 1] first (an unboxed attack such as DLG may leave
    the valid range; a viewer would clip too).

    Args:
        x: ``[B, C, H, W]`` reconstructions in [0, 1] scale.
        ref: ``[B, C, H, W]`` originals in [0, 1].
        use_lpips: try LPIPS when it is available locally.

    Returns:
        ``({"mse", "psnr", "ssim"[, "lpips"]} → [B] float64, notes)``.
    """
    xc = x.detach().clamp(0.0, 1.0)
    out = {name: spec.fn(xc, ref) for name, spec in METRICS.items() if name != "lpips"}
    notes: list[str] = []
    if use_lpips:
        ok, note = lpips_status()
        if ok:
            try:
                out["lpips"] = METRICS["lpips"].fn(xc, ref)
            except (RuntimeError, ValueError, OSError) as err:  # e.g. images too small
                notes.append(f"LPIPS skipped: {err}")
        else:
            notes.append(note)
    return out, notes
