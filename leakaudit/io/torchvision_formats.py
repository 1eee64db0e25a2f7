"""Readers for torchvision's on-disk dataset formats, from a local root, never downloading.

- CIFAR-10/100: the python pickle batches (``cifar-10-batches-py/``, ``cifar-100-python/``),
  read with an unpickler that admits only numpy arrays and plain containers.
- MNIST/FashionMNIST: the raw idx files (``MNIST/raw/``, ``FashionMNIST/raw/``, optionally
  ``.gz``).
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leakaudit.errors import InputError
from leakaudit.io.sources import Source, in_memory

_CIFAR = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "labels", 10),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels", 100),
}  # fmt: skip
_MNIST = {"mnist": "MNIST", "fashionmnist": "FashionMNIST"}
_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dicts, lists and strings; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS:
            if module.startswith("numpy.core.") and hasattr(np, "_core"):
                module = "numpy._core." + module[len("numpy.core.") :]  # numpy 2 location
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to unpickle global {module}.{name}")


def _unpickle_batch(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            obj = _NumpyOnlyUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise InputError(f"CIFAR batch {str(path)!r} is corrupt or unsafe ({exc})") from exc
    if not isinstance(obj, dict):
        raise InputError(f"CIFAR batch {str(path)!r} holds a {type(obj).__name__}, not a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def cifar_source(kind: str, root: Path, split: str) -> Source:
    """CIFAR-10/100 python batches under ``root`` (or ``root`` being the batches directory)."""
    folder, train_files, test_files, label_key, num_classes = _CIFAR[kind]
    directory = root if root.name == folder else root / folder
    names = train_files if split == "train" else test_files
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise InputError(
            f"{kind} {split} split not found: expected {root!s}/{folder}/ with "
            f"{', '.join(names)} (the python version, as torchvision stores it); "
            f"missing {', '.join(missing)}"
        )
    images, labels = [], []
    for name in names:
        batch = _unpickle_batch(directory / name)
        try:
            data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            batch_labels = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
        except (KeyError, ValueError) as exc:
            raise InputError(
                f"CIFAR batch {str(directory / name)!r} lacks 'data' [N, 3072] uint8 or "
                f"{label_key!r}: {exc}"
            ) from exc
        if len(data) != len(batch_labels):
            raise InputError(
                f"CIFAR batch {str(directory / name)!r}: data and labels differ in length"
            )
        images.append(data)
        labels.append(batch_labels)
    x = torch.from_numpy(np.concatenate(images))
    y = torch.from_numpy(np.concatenate(labels))
    return in_memory(x, y, [f"{split}:{i}" for i in range(len(y))], num_classes)


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise InputError(f"idx file {str(path)!r} cannot be read ({exc})") from exc
    if len(raw) < 4 + 4 * ndim or raw[:3] != b"\x00\x00\x08" or raw[3] != ndim:
        raise InputError(
            f"idx file {str(path)!r} is not an unsigned-byte idx file with {ndim} dimensions"
        )
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = raw[4 + 4 * ndim :]
    if len(body) != int(np.prod(dims)):
        raise InputError(
            f"idx file {str(path)!r} is truncated or corrupt: header says {dims}, "
            f"{len(body)} data bytes"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _find_idx(directories: list[Path], name: str) -> Path | None:
    for directory in directories:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def mnist_source(kind: str, root: Path, split: str) -> Source:
    """MNIST or FashionMNIST idx files under ``root/<Name>/raw``, ``root/raw`` or ``root``."""
    folder = _MNIST[kind]
    directories = [root / folder / "raw", root / "raw", root]
    image_name, label_name = _MNIST_FILES[split]
    image_path, label_path = _find_idx(directories, image_name), _find_idx(directories, label_name)
    if image_path is None or label_path is None:
        raise InputError(
            f"{kind} {split} split not found: expected {root!s}/{folder}/raw/ with "
            f"{image_name} and {label_name} (optionally .gz), as torchvision stores them"
        )
    images, labels = _read_idx(image_path, 3), _read_idx(label_path, 1)
    if len(images) != len(labels):
        raise InputError(
            f"{kind} {split}: {len(images)} images but {len(labels)} labels in {str(root)!r}"
        )
    x = torch.from_numpy(images.copy()).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return in_memory(x, y, [f"{split}:{i}" for i in range(len(y))], 10)
