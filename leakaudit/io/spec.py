"""What data to read and how to prepare it: :class:`DataSpec`, the ``data`` section of a
config (``leakaudit.config.DataConfig`` only adds the range checks)."""

from __future__ import annotations

from dataclasses import dataclass

from leakaudit.io.imagefolder import DEFAULT_MAX_PIXELS


@dataclass
class DataSpec:
    """What data to read and how to prepare it.

    Attributes:
        kind: One of ``leakaudit.io.datasets.KINDS``.
        root: Directory (imagefolder, torchvision roots) or file (tensors); None for digits.
        split: ``"train"`` or ``"test"`` for torchvision roots; None means train.
        resize: Resize every image to ``resize × resize``.
        mean: Per-channel mean, subtracted after scaling to [0, 1].
        std: Per-channel standard deviation, divided by after subtracting the mean.
        channels: Force 1 (grayscale) or 3 (RGB) channels.
        indices: Keep these positions, in this order.
        first: Then keep the first N.
        per_class: Then keep at most N per class, in dataset order.
        max_pixels: Refuse ImageFolder images larger than this (width × height), checked
            from the header before decoding.
    """

    kind: str = "imagefolder"
    root: str | None = None
    split: str | None = None
    resize: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    channels: int | None = None
    indices: list[int] | None = None
    first: int | None = None
    per_class: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
