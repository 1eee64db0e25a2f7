"""Real images for the io tests: scikit-learn digits and patches of scikit-image photos."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import torch
from PIL import Image
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


def write_imagefolder(root: Path, images: np.ndarray, labels: np.ndarray) -> list[str]:
    """Write uint8 images ``[N, H, W, 3]`` or ``[N, H, W]`` as PNGs to ``root/class_<k>/``.

    Returns the relative paths in the order ImageFolder lists them (class, then name).
    """
    paths = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        relative = f"class_{label}/img_{i:03d}.png"
        (root / f"class_{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / relative)
        paths.append(relative)
    return sorted(paths)


def write_cifar(
    root: Path, images: np.ndarray, labels: np.ndarray, *, hundred: bool = False
) -> None:
    """Write uint8 images ``[N, 32, 32, 3]`` in CIFAR's python-batch layout.

    CIFAR-10: ``root/cifar-10-batches-py/data_batch_1..5`` (samples dealt in order, batch 1
    first) and ``test_batch`` (all samples again); CIFAR-100: ``cifar-100-python/train``
    and ``test``. Rows are the CHW-flattened images, as in the real files.
    """
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    if hundred:
        folder, key = root / "cifar-100-python", "fine_labels"
        splits = {"train": [np.arange(len(images))], "test": [np.arange(len(images))]}
        names = {"train": ["train"], "test": ["test"]}
    else:
        folder, key = root / "cifar-10-batches-py", "labels"
        splits = {
            "train": np.array_split(np.arange(len(images)), 5),
            "test": [np.arange(len(images))],
        }
        names = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    folder.mkdir(parents=True, exist_ok=True)
    for split, parts in splits.items():
        for name, part in zip(names[split], parts, strict=True):
            batch = {"data": rows[part], key: labels[part].tolist(), "batch_label": name}
            with open(folder / name, "wb") as handle:
                pickle.dump(batch, handle, protocol=2)


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> None:
    """Write a uint8 array in the idx format MNIST uses (big-endian dimensions)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(f"{path}.gz", "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def write_mnist(root: Path, images: np.ndarray, labels: np.ndarray, folder: str = "MNIST") -> None:
    """Write images ``[N, H, W]`` uint8 as both splits under ``root/<folder>/raw/``."""
    raw = root / folder / "raw"
    for prefix in ("train", "t10k"):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))
