"""An example user factory for sample_configs/user_factory.yaml."""

from torch import nn


def build(
    num_classes: int, in_channels: int = 3, image_size: int = 32, width: int = 16
) -> nn.Module:
    """A two-layer ConvNet: [B, in_channels, image_size, image_size] → [B, num_classes]."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(width * (image_size // 2) ** 2, num_classes),
    )
