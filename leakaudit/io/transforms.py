"""Per-image transforms after scaling to [0, 1]: channel conversion, resize, normalisation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor

from leakaudit.errors import ConfigError


@dataclass(frozen=True)
class ImageTransform:
    """Channels → resize → normalise, applied to one image ``[C, H, W]`` in [0, 1].

    Attributes:
        channels: Force 1 (ITU-R 601 luma of RGB) or 3 (grey repeated) channels, or None.
        resize: Resize to ``resize × resize`` (bilinear, antialiased), or None.
        mean: Per-channel mean subtracted (one value broadcasts), or None.
        std: Per-channel standard deviation divided by (one value broadcasts), or None.
    """

    channels: int | None = None
    resize: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"channels must be 1 or 3, not {self.channels}")
        if self.resize is not None and self.resize < 1:
            raise ConfigError(f"resize must be >= 1, not {self.resize}")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ConfigError(f"std must be > 0, got {list(self.std)}")

    def check_channels(self, channels: int) -> None:
        """Raise ConfigError when mean/std do not fit images of ``channels`` channels."""
        for key in ("mean", "std"):
            values = getattr(self, key)
            if values is not None and len(values) not in (1, channels):
                raise ConfigError(
                    f"{key} has {len(values)} values but the images have {channels} channels"
                )

    def __call__(self, image: Tensor) -> Tensor:
        """Transform ``[C, H, W]`` float32 in [0, 1] to ``[C', H', W']`` float32."""
        if self.channels == 1 and image.shape[0] == 3:
            image = TF.rgb_to_grayscale(image, num_output_channels=1)
        elif self.channels == 3 and image.shape[0] == 1:
            image = image.expand(3, -1, -1)
        if self.resize is not None and tuple(image.shape[-2:]) != (self.resize, self.resize):
            image = TF.resize(image, [self.resize, self.resize], antialias=True)
        if self.mean is not None or self.std is not None:
            mean = torch.tensor(self.mean or (0.0,), dtype=image.dtype).view(-1, 1, 1)
            std = torch.tensor(self.std or (1.0,), dtype=image.dtype).view(-1, 1, 1)
            image = (image - mean) / std
        return image.contiguous()

    def describe(self) -> list[str]:
        """The steps, in order, for the report (``["to_float[0,1]", "resize(16)", …]``)."""
        steps = ["to_float[0,1]"]
        if self.channels is not None:
            steps.append(f"channels({self.channels})")
        if self.resize is not None:
            steps.append(f"resize({self.resize}x{self.resize}, bilinear, antialias)")
        if self.mean is not None or self.std is not None:
            steps.append(
                f"normalize(mean={list(self.mean or (0.0,))}, std={list(self.std or (1.0,))})"
            )
        return steps
