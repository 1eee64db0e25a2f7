"""Real images for the io tests: scikit-learn digits and patches of scikit-image photos."""

from __future__ import annotations

import numpy as np
import torch
from skimage import data as skdata
from sklearn.datasets import load_digits


def digit_images(n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` scikit-learn digits: images ``[n, 8, 8]`` uint8 in 0..16, labels ``[n]``."""
    digits = load_digits()
    return digits.images[:n].astype(np.uint8), digits.target[:n].astype(np.int64)


def digit_batch(n: int = 8) -> torch.Tensor:
    """Digits as model input ``[n, 1, 8, 8]`` float32 in [0, 1]."""
    images, _ = digit_images(n)
    return torch.tensor(images / 16.0, dtype=torch.float32).unsqueeze(1)


def astronaut_patches(n: int = 6, size: int = 32) -> np.ndarray:
    """``n`` non-overlapping ``size×size`` RGB patches of ``skimage.data.astronaut()``,
    uint8 ``[n, size, size, 3]``, taken along the image's diagonal band."""
    photo = skdata.astronaut()
    patches = []
    for i in range(n):
        row = (i * size) % (photo.shape[0] - size)
        col = (i * 3 * size) % (photo.shape[1] - size)
        patches.append(photo[row : row + size, col : col + size])
    return np.stack(patches)
