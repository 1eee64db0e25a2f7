"""torchvision classification models by name, always built without pretrained weights."""

from __future__ import annotations

from functools import cache
from typing import Any

import torchvision
from torch import nn

from leakaudit.errors import InputError

PREFIX = "torchvision:"


@cache
def torchvision_names() -> tuple[str, ...]:
    """Names of torchvision's image classification models (``torchvision.models``)."""
    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


def build_torchvision(
    name: str, *, num_classes: int, in_channels: int = 3, kwargs: dict[str, Any]
) -> nn.Module:
    """Build ``torchvision.models.<name>(weights=None, num_classes=..., **kwargs)``.

    Raises:
        InputError: unknown name, a request for pretrained weights, non-RGB input or
            a builder that rejects its arguments.
    """
    if name not in torchvision_names():
        from leakaudit.models.choices import did_you_mean

        raise InputError(
            f"unknown torchvision model {name!r}{did_you_mean(name, torchvision_names())}"
        )
    for key in ("weights", "pretrained", "weights_backbone"):
        if key in kwargs:
            raise InputError(
                f"model kwarg {key!r} is not allowed: leakaudit never downloads weights; "
                "give them as a checkpoint instead"
            )
    if in_channels != 3:
        raise InputError(
            f"torchvision model {name!r} expects 3-channel input, but the data has "
            f"{in_channels}; convert the data with channels: 3"
        )
    try:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    except (TypeError, ValueError) as exc:
        raise InputError(f"torchvision model {name!r} rejected its arguments: {exc}") from exc
