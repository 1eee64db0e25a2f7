"""Readers for torchvision's on-disk dataset formats, from a local root, never downloading.

- CIFAR-10/100: the python pickle batches (``cifar-10-batches-py/``, ``cifar-100-python/``),
  read with an unpickler that admits only numpy arrays and plain containers.
- MNIST/FashionMNIST: the raw idx files (``MNIST/raw/``, ``FashionMNIST/raw/``, optionally
  ``.gz``).
"""

from __future__ import annotations

import gzip
import math
import pickle
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leakaudit.errors import InputError
from leakaudit.io.sources import Source, check_budget, in_memory

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
_RECONSTRUCT = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
}
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayType:
    """Stands for ``numpy.ndarray`` in a pickle: an argument of ``_reconstruct`` only, so that
    the file cannot call ``ndarray(shape)`` to allocate memory it does not hold."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _ArrayType:
        raise pickle.UnpicklingError("refused to call numpy.ndarray (memory the file lacks)")


class _PlainArray(np.ndarray):
    """An array whose pickled state must be a plain dtype and raw bytes: numpy crashes on
    some object-array states, and CIFAR holds none."""

    def __setstate__(self, state: Any) -> None:
        dtype, data = (state[2], state[4]) if len(state) == 5 else (None, None)
        if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
            raise pickle.UnpicklingError("refused: an array of Python objects, or not raw bytes")
        super().__setstate__(state)


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's ``_reconstruct`` as numpy pickles it: an empty array, filled by its state
    (whose data must then be in the file)."""
    if subtype is not _ArrayType or tuple(shape) != (0,):
        raise pickle.UnpicklingError("refused: an array not pickled the way numpy pickles one")
    code = dtype.decode("latin1") if isinstance(dtype, bytes) else dtype
    return _PlainArray((0,), dtype=np.dtype(code))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dicts, lists and strings; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("numpy", "ndarray"):
            return _ArrayType
        if (module, name) in _RECONSTRUCT:
            return _reconstruct
        if (module, name) in _NUMPY_GLOBALS:
            if module.startswith("numpy.core.") and hasattr(np, "_core"):
                module = "numpy._core." + module[len("numpy.core.") :]  # numpy 2 location
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to unpickle global {module}.{name}")


def _unpickle_batch(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            obj = _NumpyOnlyUnpickler(handle, encoding="latin1").load()
    except OSError as exc:
        raise InputError(f"CIFAR batch {str(path)!r} cannot be read ({exc})") from exc
    except Exception as exc:  # whatever a corrupt pickle makes the unpickler raise
        reason = f"{type(exc).__name__}: {exc}"
        raise InputError(f"CIFAR batch {str(path)!r} is corrupt or unsafe ({reason})") from exc
    if not isinstance(obj, dict):
        raise InputError(f"CIFAR batch {str(path)!r} holds a {type(obj).__name__}, not a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _cifar_arrays(
    batch: dict[str, Any], label_key: str, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """``data`` as ``[N, 3, 32, 32]`` uint8 and the labels as ``[N]`` int64."""
    where = f"CIFAR batch {str(path)!r}"
    try:
        data = np.asarray(batch["data"])
        labels = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
    except KeyError as exc:
        raise InputError(f"{where} lacks {exc} (expected 'data' and {label_key!r})") from exc
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"{where}: 'data' or {label_key!r} is not numeric ({exc})") from exc
    if data.dtype.kind in "iu" and data.size and 0 <= data.min() and data.max() <= 255:
        data = data.astype(np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8:
        raise InputError(
            f"{where}: 'data' is {data.dtype} of shape {list(data.shape)}; expected uint8 [N, 3072]"
        )
    if len(data) != len(labels):
        raise InputError(f"{where}: {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def cifar_source(kind: str, root: Path, split: str, budget: int | None = None) -> Source:
    """CIFAR-10/100 python batches under ``root`` (or ``root`` being the batches directory).

    The batches are read whole: their total file size must fit ``budget`` bytes.
    """
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
    size = sum((directory / name).stat().st_size for name in names)
    check_budget(size, f"the {kind} {split} split in {str(directory)!r}", budget)
    images, labels = [], []
    for name in names:
        data, batch_labels = _cifar_arrays(
            _unpickle_batch(directory / name), label_key, directory / name
        )
        images.append(data)
        labels.append(batch_labels)
    x = torch.from_numpy(np.concatenate(images))
    y = torch.from_numpy(np.concatenate(labels))
    return in_memory(x, y, [f"{split}:{i}" for i in range(len(y))], num_classes)


def _read_idx(path: Path, ndim: int, budget: int | None) -> np.ndarray:
    """An unsigned-byte idx array; its header is checked against ``budget`` before the
    data is read (or decompressed), and exactly the declared bytes must follow."""
    where = f"idx file {str(path)!r}"
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            header = handle.read(4 + 4 * ndim)
            if len(header) < 4 + 4 * ndim or header[:3] != b"\x00\x00\x08" or header[3] != ndim:
                raise InputError(f"{where} is not an unsigned-byte idx file with {ndim} dimensions")
            dims = [int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
            size = math.prod(dims)
            check_budget(size, where, budget)
            body = bytearray(handle.read(size + 1))
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{where} cannot be read ({type(exc).__name__}: {exc})") from exc
    if len(body) != size:
        raise InputError(
            f"{where} is truncated or corrupt: header says {dims}, "
            f"{len(body) if len(body) <= size else 'more'} data bytes"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _find_idx(directories: list[Path], name: str) -> Path | None:
    for directory in directories:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def mnist_source(kind: str, root: Path, split: str, budget: int | None = None) -> Source:
    """MNIST or FashionMNIST idx files under ``root/<Name>/raw``, ``root/raw`` or ``root``.

    The files are read whole: each one's declared size must fit ``budget`` bytes.
    """
    folder = _MNIST[kind]
    directories = [root / folder / "raw", root / "raw", root]
    image_name, label_name = _MNIST_FILES[split]
    image_path, label_path = _find_idx(directories, image_name), _find_idx(directories, label_name)
    if image_path is None or label_path is None:
        raise InputError(
            f"{kind} {split} split not found: expected {root!s}/{folder}/raw/ with "
            f"{image_name} and {label_name} (optionally .gz), as torchvision stores them"
        )
    images, labels = _read_idx(image_path, 3, budget), _read_idx(label_path, 1, budget)
    if len(images) != len(labels):
        raise InputError(
            f"{kind} {split}: {len(images)} images but {len(labels)} labels in {str(root)!r}"
        )
    x = torch.from_numpy(images).unsqueeze(1)  # writable: read into a bytearray
    y = torch.from_numpy(labels.astype(np.int64))
    return in_memory(x, y, [f"{split}:{i}" for i in range(len(y))], 10)


def format_files(kind: str, root: Path) -> list[Path]:
    """The files of ``kind`` (``cifar10``, ``cifar100``, ``mnist``, ``fashionmnist``) that
    exist under ``root`` where :func:`cifar_source` and :func:`mnist_source` look, both
    splits: a run must never write over them."""
    if kind in _CIFAR:
        folder, train_files, test_files, _, _ = _CIFAR[kind]
        directory = root if root.name == folder else root / folder
        candidates = [directory / name for name in (*train_files, *test_files)]
    elif kind in _MNIST:
        directories = [root / _MNIST[kind] / "raw", root / "raw", root]
        names = [n for pair in _MNIST_FILES.values() for n in pair]
        candidates = [d / f"{n}{gz}" for d in directories for n in names for gz in ("", ".gz")]
    else:
        return []
    return [path for path in candidates if path.is_file()]
