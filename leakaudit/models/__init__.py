"""The model zoo: built-in architectures, torchvision models and users' own factories.

``build_model(name, num_classes=..., ...)`` accepts

- a built-in name from :data:`BUILTIN_MODELS`;
- ``"torchvision:<name>"`` or a plain torchvision classification model name that is not
  a built-in (always ``weights=None``: nothing is downloaded);
- ``"path/to/file.py:build"`` or ``"package.module:build"``: a user's factory.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from leakaudit.errors import InputError
from leakaudit.models.choices import did_you_mean
from leakaudit.models.convnet import ConvNet, build_convnet
from leakaudit.models.factory import build_from_factory, is_factory_spec
from leakaudit.models.lenet import LeNet, build_lenet, dlg_init_
from leakaudit.models.resnet import CifarResNet, build_resnet18, build_resnet20
from leakaudit.models.torchvision_models import PREFIX, build_torchvision, torchvision_names
from leakaudit.registry import Registry

#: Built-in architecture name → its builder.
MODELS: Registry[Callable[..., nn.Module]] = Registry(
    "model",
    [
        ("lenet", build_lenet),
        ("convnet", build_convnet),
        ("resnet18", build_resnet18),
        ("resnet20", build_resnet20),
    ],
)

#: Names of the built-in architectures.
BUILTIN_MODELS: tuple[str, ...] = MODELS.names()

_FIXED = ("num_classes", "in_channels", "image_size")


def builtin_kwargs(name: str) -> tuple[str, ...]:
    """The extra keyword arguments a built-in model accepts (e.g. ``("init",)`` for lenet)."""
    params = inspect.signature(MODELS[name]).parameters
    return tuple(p for p in params if p not in _FIXED)


def _build_builtin(
    name: str, num_classes: int, in_channels: int, image_size: int, kwargs: dict[str, Any]
) -> nn.Module:
    allowed = builtin_kwargs(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise InputError(
            f"model {name!r} does not accept kwargs {', '.join(map(repr, unknown))} "
            f"(accepted: {', '.join(allowed) or 'none'})"
        )
    try:
        return MODELS[name](
            num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kwargs
        )
    except (TypeError, ValueError) as exc:
        raise InputError(f"model {name!r}: {exc}") from exc


def _unknown(name: str) -> InputError:
    hint = did_you_mean(name, BUILTIN_MODELS + torchvision_names())
    return InputError(
        f"unknown model {name!r}{hint} (choices: {', '.join(BUILTIN_MODELS)}, "
        "torchvision:<name> for any torchvision classification model, "
        "or path/to/file.py:function / package.module:function for your own factory)"
    )


def build_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 32,
    kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """Build an untrained model by name.

    Args:
        name: A built-in name, ``torchvision:<name>``, a torchvision name, or a factory spec.
        num_classes: Number of output classes K (the model maps ``[B, C, H, W]`` → ``[B, K]``).
        in_channels: Input channels C.
        image_size: Input side H = W (used by models whose head depends on it).
        kwargs: Extra keyword arguments for the builder or factory.

    Returns:
        The model, with freshly initialised weights, in training mode.

    Raises:
        InputError: with one line naming what is wrong and the choices.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise InputError(f"num_classes must be an integer >= 1, not {num_classes!r}")
    extra = dict(kwargs or {})
    if name in MODELS:
        return _build_builtin(name, num_classes, in_channels, image_size, extra)
    if name.startswith(PREFIX):
        return build_torchvision(
            name[len(PREFIX) :], num_classes=num_classes, in_channels=in_channels, kwargs=extra
        )
    if is_factory_spec(name):
        return build_from_factory(
            name,
            num_classes=num_classes,
            in_channels=in_channels,
            image_size=image_size,
            kwargs=extra,
        )
    if name in torchvision_names():
        return build_torchvision(
            name, num_classes=num_classes, in_channels=in_channels, kwargs=extra
        )
    raise _unknown(name)


__all__ = [
    "BUILTIN_MODELS",
    "MODELS",
    "CifarResNet",
    "ConvNet",
    "LeNet",
    "build_model",
    "builtin_kwargs",
    "dlg_init_",
    "torchvision_names",
]
