"""A small ReLU ConvNet, a scaled-down version of the "ConvNet" of Inverting Gradients
(Geiping et al., NeurIPS 2020): conv–BatchNorm–ReLU stages of doubling width, 2×2 max
pooling between stages while the feature map is at least 4×4, global average pooling
and a linear head."""

from __future__ import annotations

from torch import Tensor, nn


class ConvNet(nn.Module):
    """Images ``[B, in_channels, H, W]`` → logits ``[B, K]``.

    Args:
        num_classes: Number of output classes K.
        in_channels: Input channels.
        image_size: Input side, used only to decide where to pool.
        width: Channels of the first stage; stage i has ``width·2^i``.
        depth: Number of conv stages.
        batchnorm: Whether each conv is followed by BatchNorm2d.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        image_size: int = 32,
        width: int = 16,
        depth: int = 3,
        batchnorm: bool = True,
    ) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be >= 1 (got width={width}, depth={depth})")
        layers: list[nn.Module] = []
        channels, side = in_channels, image_size
        for stage in range(depth):
            out = width * 2**stage
            layers.append(nn.Conv2d(channels, out, 3, padding=1, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU())
            if stage < depth - 1 and side >= 4:
                layers.append(nn.MaxPool2d(2))
                side //= 2
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Map images ``[B, C, H, W]`` to logits ``[B, K]``."""
        return self.fc(self.pool(self.features(x)).flatten(1))


def build_convnet(
    *,
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 32,
    width: int = 16,
    depth: int = 3,
    batchnorm: bool = True,
) -> ConvNet:
    """Build :class:`ConvNet` (kwargs: ``width``, ``depth``, ``batchnorm``)."""
    return ConvNet(num_classes, in_channels, image_size, width, depth, batchnorm)
