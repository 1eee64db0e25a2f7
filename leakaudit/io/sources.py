"""Raw sample sources: each gives labels, ids and a reader of image ``i`` as ``[C, H, W]``
float32 in [0, 1], before any transform."""

from __future__ import annotations

import importlib.util
import math
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from leakaudit.errors import InputError
from leakaudit.io.checkpoints import refused_global

INPUT_KEYS = ("x", "inputs", "data", "images")
LABEL_KEYS = ("y", "labels", "targets")


@dataclass
class Source:
    """A dataset before selection and transforms.

    Attributes:
        read: ``read(i)`` → image ``i`` as ``[C, H, W]`` float32, in [0, 1] for 8-bit data.
        labels: ``[N]`` int64.
        ids: ``N`` sample ids.
        num_classes: Number of classes.
        classes: Class names where the format has them.
    """

    read: Callable[[int], Tensor]
    labels: Tensor
    ids: list[str]
    num_classes: int
    classes: list[str] | None = None


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


def check_budget(nbytes: int, source: str, budget: int | None) -> None:
    """Refuse data of ``nbytes`` to be held in memory when it exceeds ``budget`` (None: no
    limit). Called with the size declared by headers, before anything is allocated."""
    if budget is not None and nbytes > budget:
        raise InputError(
            f"{source} holds {_size(nbytes)} of data, more than scores.memory_budget "
            f"({_size(budget)}), and is read into memory whole: raise memory_budget, or "
            "pass a smaller file (an ImageFolder is read one image at a time)"
        )


def to_unit_float(images: Tensor, source: str) -> Tensor:
    """uint8 → float32 / 255; bool and floating → float32 unchanged."""
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    if images.dtype.is_floating_point or images.dtype == torch.bool:
        return images.float()
    raise InputError(
        f"{source}: inputs have dtype {images.dtype}; store images as uint8 (0-255) or float"
    )


def in_memory(images: Tensor, labels: Tensor, ids: list[str], num_classes: int) -> Source:
    """A source over images ``[N, C, H, W]`` (uint8 or float) held in memory."""

    def read(i: int) -> Tensor:
        image = images[i]
        return image.float() / 255.0 if image.dtype == torch.uint8 else image.float()

    return Source(read, labels, ids, num_classes)


def digits_source() -> Source:
    """scikit-learn's 8×8 digits: 1797 images ``[1, 8, 8]``, values 0–16 scaled to [0, 1]."""
    pixels, target = _digits()
    images = torch.tensor(pixels / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(target, dtype=torch.int64)
    return in_memory(images, labels, [f"index:{i}" for i in range(len(labels))], 10)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """The digits' images ``[1797, 8, 8]`` and labels: scikit-learn's packaged CSV (what
    ``load_digits`` parses), read without importing scikit-learn (~0.15 s of a demo
    scan), else ``load_digits`` itself."""
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            data = np.loadtxt(path, delimiter=",")
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target


# --- tensor files -----------------------------------------------------------------------


def _pick(mapping: Mapping[str, Any], keys: tuple[str, ...], what: str, source: str) -> Any:
    for key in keys:
        if key in mapping:
            return mapping[key]
    found = ", ".join(sorted(map(str, mapping))) or "none"
    raise InputError(f"{source}: no {what} found (looked for keys {', '.join(keys)}; has {found})")


def _as_tensor(value: Any, what: str, source: str) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray) and value.dtype != object:
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, list | tuple):
        try:
            return torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InputError(f"{source}: {what} are not numeric: {exc}") from exc
    raise InputError(f"{source}: {what} are a {type(value).__name__}, not a tensor or array")


def _to_nchw(x: Tensor, source: str) -> Tensor:
    if x.ndim == 3:
        return x.unsqueeze(1)
    if x.ndim == 4:
        if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
            return x.permute(0, 3, 1, 2)
        return x
    raise InputError(
        f"{source}: inputs have shape {list(x.shape)}; expected images [N, C, H, W], "
        "[N, H, W, C] or [N, H, W]"
    )


def _labels(y: Tensor, n: int, source: str) -> Tensor:
    if y.ndim == 2 and y.shape[1] > 1:
        if not bool(((y == 0) | (y == 1)).all() and (y.sum(1) == 1).all()):
            raise InputError(f"{source}: labels of shape {list(y.shape)} are not one-hot")
        y = y.argmax(1)
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1 or len(y) != n:
        raise InputError(f"{source}: {n} inputs but labels of shape {list(y.shape)}")
    if y.dtype.is_floating_point and not torch.equal(y, y.round()):
        raise InputError(f"{source}: labels are not whole numbers")
    return y.to(torch.int64)


def _npz_nbytes(path: Path) -> int:
    """Bytes the arrays of an ``.npz`` declare in their ``.npy`` headers."""
    total = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(member)
                total += math.prod(shape) * dtype.itemsize
    return total


def _pt_nbytes(path: Path) -> int:
    """Bytes a ``.pt`` file unpacks to: its zip entries' sizes (or the file size)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return sum(info.file_size for info in archive.infolist())
    return path.stat().st_size


def _load_tensor_file(path: Path, budget: int | None) -> Mapping[str, Any] | Sequence[Any]:
    source = str(path)
    if path.suffix == ".npz":
        try:
            check_budget(_npz_nbytes(path), source, budget)
            with np.load(path, allow_pickle=False) as archive:
                return {k: archive[k] for k in archive.files}
        except ValueError as exc:  # object arrays need pickle: refused
            raise InputError(f"{source}: cannot read .npz safely ({exc})") from exc
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise InputError(f"{source}: not a readable .npz file ({exc})") from exc
    try:
        check_budget(_pt_nbytes(path), source, budget)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"{source}: not a readable tensor file ({exc})") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch's own message suggests weights_only=False: not ours to suggest
        if "weights only load failed" in str(exc).lower():
            found = refused_global(exc)
            what = f"the Python object {found}" if found else "objects other than tensors"
            raise InputError(
                f"{source}: holds {what}, which safe loading (weights_only=True) refuses; "
                "save only tensors, lists and dicts"
            ) from exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"{source}: cannot load tensors safely (weights_only=True): {first}"
        ) from exc
    if isinstance(obj, Mapping | tuple | list):
        return obj
    raise InputError(f"{source}: holds a {type(obj).__name__}; expected a dict or (x, y)")


def tensors_source(path: Path, budget: int | None = None) -> Source:
    """Inputs and labels from a ``.pt`` (dict or ``(x, y)``) or ``.npz`` (``x``, ``y``) file.

    The file is read whole: its declared size must fit ``budget`` bytes (None: no limit).
    """
    source = str(path)
    if not path.is_file():
        raise InputError(
            f"tensor file {source!r} " + ("is a directory" if path.is_dir() else "does not exist")
        )
    obj = _load_tensor_file(path, budget)
    num_classes: int | None = None
    if isinstance(obj, Mapping):
        x_raw = _pick(obj, INPUT_KEYS, "inputs", source)
        y_raw = _pick(obj, LABEL_KEYS, "labels", source)
        if "num_classes" in obj:
            declared = obj["num_classes"]
            if isinstance(declared, Tensor | np.ndarray | np.generic) and declared.ndim == 0:
                declared = declared.item()
            if isinstance(declared, bool) or not isinstance(declared, int) or declared < 1:
                raise InputError(f"{source}: num_classes must be an integer >= 1, not {declared!r}")
            num_classes = declared
        elif isinstance(obj.get("classes"), list | tuple):
            num_classes = len(obj["classes"])
    elif len(obj) == 2:
        x_raw, y_raw = obj
    else:
        raise InputError(f"{source}: holds a sequence of {len(obj)} items; expected (x, y)")
    x = _to_nchw(_as_tensor(x_raw, "inputs", source), source)
    to_unit_float(x[:0], source)  # dtype check
    y = _labels(_as_tensor(y_raw, "labels", source), len(x), source)
    if num_classes is None:
        num_classes = int(y.max()) + 1 if len(y) else 0
    return in_memory(x, y, [f"index:{i}" for i in range(len(y))], num_classes)
