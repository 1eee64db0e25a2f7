"""Real 32×32 RGB images for benchmarks: patches of scikit-image's sample photographs."""

from __future__ import annotations

import numpy as np
import torch
from skimage import data as skdata
from skimage.transform import resize
from torch import Tensor

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")


def photo_patches(n: int, size: int = 32, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n`` RGB patches ``[n, 3, size, size]`` in [0, 1]; the label is the source photo."""
    rng = np.random.default_rng(seed)
    imgs = [resize(getattr(skdata, p)(), (256, 256), anti_aliasing=True) for p in PHOTOS]
    xs, ys = [], []
    for k in range(n):
        label = k % len(imgs)
        r, c = rng.integers(0, 256 - size, size=2)
        xs.append(np.transpose(imgs[label][r : r + size, c : c + size, :3], (2, 0, 1)))
        ys.append(label)
    return torch.tensor(np.stack(xs), dtype=torch.float32), torch.tensor(ys)
