"""CIFAR ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016).

A 3×3 stem convolution and no max-pool, so 32×32 inputs keep their resolution in the
first stage; any side >= 8 works (global average pooling before the head). Module
names follow the widely used CIFAR implementations (``conv1``, ``bn1``,
``layer{i}.{j}.conv1``, ``…shortcut.0``, ``linear``) so their state_dicts load unchanged.

- ResNet-18: 4 stages × 2 basic blocks, widths 64/128/256/512, projection shortcuts.
- ResNet-20: 3 stages × 3 basic blocks, widths 16/32/64, parameter-free shortcuts
  (stride-2 subsampling and zero-padded channels, "option A" of the paper).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample by ``stride`` and zero-pad channels up to ``out``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = out_channels - in_channels

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C_in, H, W]`` → ``[B, C_out, ⌈H/s⌉, ⌈W/s⌉]``."""
        x = x[:, :, :: self.stride, :: self.stride]
        before = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, before, self.extra - before))


class BasicBlock(nn.Module):
    """Two 3×3 conv–BN layers with a residual connection, ReLU after the sum."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            if shortcut == "A":
                self.shortcut = PadShortcut(in_channels, out_channels, stride)
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                    nn.BatchNorm2d(out_channels),
                )

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C_in, H, W]`` → ``[B, C_out, H/stride, W/stride]``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """Images ``[B, in_channels, H, W]`` → logits ``[B, K]``.

    Args:
        blocks: Basic blocks per stage, e.g. ``(2, 2, 2, 2)`` or ``(3, 3, 3)``.
        width: Channels of the first stage; stage i has ``width·2^i``.
        num_classes: Number of output classes K.
        in_channels: Input channels.
        shortcut: ``"A"`` (zero padding, no parameters) or ``"B"`` (1×1 conv + BN).
    """

    def __init__(
        self,
        blocks: tuple[int, ...],
        width: int,
        num_classes: int,
        in_channels: int = 3,
        shortcut: str = "B",
    ) -> None:
        super().__init__()
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', not {shortcut!r}")
        if width < 1:
            raise ValueError(f"width must be >= 1, not {width}")
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        channels = width
        for stage, count in enumerate(blocks):
            out = width * 2**stage
            layer = nn.Sequential(
                *(
                    BasicBlock(
                        channels if i == 0 else out, out, 2 if i == 0 and stage else 1, shortcut
                    )
                    for i in range(count)
                )
            )
            self.add_module(f"layer{stage + 1}", layer)
            channels = out
        self.num_stages = len(blocks)
        self.linear = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Map images ``[B, C, H, W]`` to logits ``[B, K]``."""
        out = F.relu(self.bn1(self.conv1(x)))
        for stage in range(self.num_stages):
            out = getattr(self, f"layer{stage + 1}")(out)
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def build_resnet18(
    *,
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 32,
    width: int = 64,
    shortcut: str = "B",
) -> CifarResNet:
    """CIFAR ResNet-18 (kwargs: ``width`` of the first stage, ``shortcut``)."""
    del image_size  # global pooling: any side >= 8 works
    return CifarResNet((2, 2, 2, 2), width, num_classes, in_channels, shortcut)


def build_resnet20(
    *,
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 32,
    width: int = 16,
    shortcut: str = "A",
) -> CifarResNet:
    """CIFAR ResNet-20 (kwargs: ``width`` of the first stage, ``shortcut``)."""
    del image_size
    return CifarResNet((3, 3, 3), width, num_classes, in_channels, shortcut)
