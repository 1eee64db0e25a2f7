"""The LeNet of "Deep Leakage from Gradients" (Zhu, Liu and Han, NeurIPS 2019).

Three 5×5 convolutions with 12 channels and sigmoid activations (strides 2, 2, 1,
padding 2) and one linear layer. Module names follow the DLG reference code
(``body.0``, ``body.2``, ``body.4``, ``fc.0``) so its state_dicts load unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class LeNet(nn.Module):
    """DLG LeNet for inputs ``[B, in_channels, image_size, image_size]`` → logits ``[B, K]``.

    Args:
        num_classes: Number of output classes K.
        in_channels: Input channels (1 or 3).
        image_size: Input height and width; the linear layer has ``12·⌈⌈s/2⌉/2⌉²`` inputs
            (768 for 32×32, 588 for 28×28, 48 for 8×8).
    """

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 12, kernel_size=5, padding=2, stride=2),
            nn.Sigmoid(),
            nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=2),
            nn.Sigmoid(),
            nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=1),
            nn.Sigmoid(),
        )
        side = math.ceil(math.ceil(image_size / 2) / 2)
        self.fc = nn.Sequential(nn.Linear(12 * side * side, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        """Map images ``[B, C, H, W]`` to logits ``[B, K]``."""
        return self.fc(self.body(x).flatten(1))


@torch.no_grad()
def dlg_init_(model: nn.Module) -> nn.Module:
    """Draw every conv/linear weight and bias from U(-0.5, 0.5), as the DLG code does.

    Uses the global torch RNG (seed it for reproducible weights); returns ``model``.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            module.weight.uniform_(-0.5, 0.5)
            if module.bias is not None:
                module.bias.uniform_(-0.5, 0.5)
    return model


def build_lenet(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, init: str = "default"
) -> LeNet:
    """Build the DLG LeNet; ``init="dlg"`` applies :func:`dlg_init_`, ``"default"`` keeps
    PyTorch's initialisation."""
    if init not in ("default", "dlg"):
        raise ValueError(f"init must be 'default' or 'dlg', not {init!r}")
    model = LeNet(num_classes, in_channels, image_size)
    if init == "dlg":
        dlg_init_(model)
    return model
