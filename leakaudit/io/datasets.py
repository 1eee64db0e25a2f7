"""Load the client's samples: what to read (:class:`~leakaudit.io.spec.DataSpec`), what
comes back (:class:`LoadedDataset`), and the checks that make bad data one clear error."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from leakaudit.errors import ConfigError, InputError
from leakaudit.io.imagefolder import imagefolder_source
from leakaudit.io.sources import Source, digits_source, tensors_source
from leakaudit.io.spec import DataSpec
from leakaudit.io.subsets import select_positions
from leakaudit.io.torchvision_formats import cifar_source, mnist_source
from leakaudit.io.transforms import ImageTransform
from leakaudit.models.choices import did_you_mean

KINDS = ("imagefolder", "cifar10", "cifar100", "mnist", "fashionmnist", "tensors", "digits")
SPLITS = ("train", "test")


@dataclass
class LoadedDataset:
    """The selected, transformed samples and what the report needs to know about them.

    Attributes:
        dataset: Map-style dataset yielding ``(x [C, H, W] float32, y int)``.
        ids: Per sample: file path relative to root (imagefolder), ``"<split>:<n>"``
            (torchvision roots) or ``"index:<n>"`` (tensors, digits); n is the position in
            the full file or split, before subsetting.
        labels: ``[N]`` int64 labels, in dataset order.
        num_classes: Number of classes of the source data.
        input_shape: ``(C, H, W)`` of the first sample after transforms (``()`` if empty).
        description: kind, root, split, sizes, transforms and subset, for the JSON report.
    """

    dataset: Dataset[tuple[Tensor, int]]
    ids: list[str]
    labels: Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    description: dict[str, Any]


class SampleDataset(Dataset[tuple[Tensor, int]]):
    """Selected positions of a source, transformed on access."""

    def __init__(
        self,
        read: Callable[[int], Tensor],
        labels: Tensor,
        positions: list[int],
        transform: ImageTransform,
    ) -> None:
        self.read = read
        self.labels = labels
        self.positions = positions
        self.transform = transform

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        position = self.positions[index]
        return self.transform(self.read(position)), int(self.labels[position])


def _validate(spec: DataSpec) -> tuple[str, Path | None]:
    if spec.kind not in KINDS:
        raise ConfigError(
            f"unknown data kind {spec.kind!r}{did_you_mean(spec.kind, KINDS)} "
            f"(choices: {', '.join(KINDS)})"
        )
    split = spec.split or "train"
    if split not in SPLITS:
        raise ConfigError(f"split must be 'train' or 'test', not {split!r}")
    if spec.kind == "digits":
        return split, None
    if not spec.root:
        raise ConfigError(f"data kind {spec.kind!r} needs a root (a directory or file)")
    return split, Path(spec.root).expanduser()


def _source(spec: DataSpec, split: str, root: Path | None, budget: int | None) -> Source:
    if spec.kind == "digits" or root is None:
        return digits_source()
    if spec.kind == "imagefolder":
        return imagefolder_source(root, spec.channels, spec.max_pixels)
    if spec.kind == "tensors":
        return tensors_source(root, budget)
    if not root.is_dir():
        where = "is a file" if root.exists() else "does not exist"
        raise InputError(f"{spec.kind} root {str(root)!r} {where}; expected a directory")
    if spec.kind.startswith("cifar"):
        return cifar_source(spec.kind, root, split, budget)
    return mnist_source(spec.kind, root, split, budget)


def load_dataset(spec: DataSpec, memory_budget: int | None = None) -> LoadedDataset:
    """Read, select and (lazily) transform the samples ``spec`` names.

    Data read whole into memory (tensor files, CIFAR, MNIST) must fit ``memory_budget``
    bytes, checked from headers and file sizes before reading (None: no limit);
    ImageFolders are read one image at a time.

    Pixel data is scaled to [0, 1] (uint8 / 255; digits / 16), then channel conversion,
    resize and normalisation are applied per sample on access.

    Raises:
        ConfigError: unknown kind or split, missing root, mean/std not fitting the channels.
        InputError: missing files (the message names the expected layout), unreadable or
            unsafe files, out-of-range indices.
    """
    split, root = _validate(spec)
    transform = ImageTransform(
        channels=spec.channels,
        resize=spec.resize,
        mean=tuple(spec.mean) if spec.mean is not None else None,
        std=tuple(spec.std) if spec.std is not None else None,
    )
    source = _source(spec, split, root, memory_budget)
    positions = select_positions(
        source.labels, indices=spec.indices, first=spec.first, per_class=spec.per_class
    )
    dataset = SampleDataset(source.read, source.labels, positions, transform)
    input_shape: tuple[int, ...] = ()
    if positions:
        raw = source.read(positions[0])
        transform.check_channels(spec.channels or raw.shape[0])
        input_shape = tuple(transform(raw).shape)
    subset = {"indices": list(spec.indices) if spec.indices is not None else None,
              "first": spec.first, "per_class": spec.per_class}  # fmt: skip
    description: dict[str, Any] = {
        "kind": spec.kind,
        "root": str(root) if root is not None else None,
        "split": split if spec.kind not in ("imagefolder", "tensors", "digits") else None,
        "size": len(positions),
        "source_size": len(source.labels),
        "num_classes": source.num_classes,
        "input_shape": list(input_shape),
        "transforms": transform.describe(),
        "subset": subset if any(v is not None for v in subset.values()) else None,
    }
    if source.classes is not None:
        description["classes"] = source.classes
    return LoadedDataset(
        dataset=dataset,
        ids=[source.ids[p] for p in positions],
        labels=source.labels[positions].clone(),
        num_classes=source.num_classes,
        input_shape=input_shape,
        description=description,
    )


def check_dataset(
    loaded: LoadedDataset, num_classes: int | None = None, *, scan_values: bool = True
) -> None:
    """Raise InputError for data the audit cannot use.

    Args:
        loaded: The dataset to check.
        num_classes: Labels must lie in ``[0, num_classes)`` (default: the dataset's own).
        scan_values: Also read every sample: shapes must equal ``input_shape`` and values
            must be finite (names the first bad sample id).

    Raises:
        InputError: empty dataset, label out of range, inconsistent shape, NaN/Inf.
    """
    count = len(loaded.ids)
    if count == 0:
        raise InputError(
            f"the dataset is empty ({loaded.description.get('kind')} at "
            f"{loaded.description.get('root')}, subset {loaded.description.get('subset')})"
        )
    k = loaded.num_classes if num_classes is None else num_classes
    bad = ((loaded.labels < 0) | (loaded.labels >= k)).nonzero().flatten()
    if len(bad):
        first = int(bad[0])
        raise InputError(
            f"label {int(loaded.labels[first])} of sample {loaded.ids[first]!r} is out of "
            f"range for {k} classes (labels must be 0..{k - 1}; {len(bad)} bad labels)"
        )
    if not scan_values:
        return
    for index in range(count):
        x, _ = loaded.dataset[index]
        if tuple(x.shape) != loaded.input_shape:
            raise InputError(
                f"sample {loaded.ids[index]!r} has shape {list(x.shape)} but the first sample "
                f"has {list(loaded.input_shape)}; set resize (and channels) to make them agree"
            )
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            nan = int(torch.isnan(x).sum())
            inf = int((~finite).sum()) - nan
            raise InputError(
                f"sample {loaded.ids[index]!r} contains non-finite values ({nan} NaN, {inf} Inf)"
            )
