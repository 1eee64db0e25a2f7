"""A user's own model factory, given as ``path/to/file.py:build`` or ``package.module:build``.

Importing the file or module runs the user's code; naming it is the user's explicit choice.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from leakaudit.errors import InputError


def is_factory_spec(name: str) -> bool:
    """Whether ``name`` looks like ``<file.py or module>:<attribute>``.

    ``torchvision:<name>`` is not one: it names a torchvision architecture, built without
    importing anything the name chooses.
    """
    if name.startswith("torchvision:"):
        return False
    target, sep, attr = name.rpartition(":")
    return bool(sep and target and attr)


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        where = "is a directory" if path.is_dir() else "does not exist"
        raise InputError(f"model factory file {str(path)!r} {where}")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    module_name = f"_leakaudit_user_model_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"cannot import model factory file {str(path)!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    folder = str(path.resolve().parent)
    if folder not in sys.path:  # as for a script: the file may import its sibling modules
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise InputError(
            f"importing model factory file {str(path)!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise InputError(f"cannot import model factory module {name!r}: {exc}") from exc
    except Exception as exc:
        raise InputError(
            f"importing model factory module {name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def load_factory(spec: str) -> Callable[..., Any]:
    """Resolve ``spec`` to the callable it names.

    Raises:
        InputError: missing file or module, import failure, missing or non-callable attribute.
    """
    target, _, attr = spec.rpartition(":")
    is_file = target.endswith(".py") or "/" in target or "\\" in target
    module = _import_file(Path(target)) if is_file else _import_module(target)
    factory = getattr(module, attr, None)
    if factory is None:
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        listed = ", ".join(found[:8]) or "none"
        raise InputError(f"{target!r} has no attribute {attr!r} (callables found: {listed})")
    if not callable(factory):
        raise InputError(f"{spec!r} is a {type(factory).__name__}, not a callable")
    return factory


def _accepts(factory: Callable[..., Any], name: str) -> bool:
    """Whether ``factory`` takes ``name`` as a keyword (named or through ``**kwargs``)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    if name in params:
        return params[name].kind is not inspect.Parameter.POSITIONAL_ONLY
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _names_param(factory: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def build_from_factory(
    spec: str, *, num_classes: int, in_channels: int, image_size: int, kwargs: dict[str, Any]
) -> nn.Module:
    """Call the factory named by ``spec`` and check that it returns an ``nn.Module``.

    ``num_classes`` is passed when the factory accepts it (by name or ``**kwargs``);
    ``in_channels`` and ``image_size`` only when the factory names them; then ``kwargs``.
    """
    factory = load_factory(spec)
    call_kwargs: dict[str, Any] = {}
    if _accepts(factory, "num_classes"):
        call_kwargs["num_classes"] = num_classes
    if _names_param(factory, "in_channels"):
        call_kwargs["in_channels"] = in_channels
    if _names_param(factory, "image_size"):
        call_kwargs["image_size"] = image_size
    call_kwargs.update(kwargs)
    try:
        model = factory(**call_kwargs)
    except Exception as exc:
        raise InputError(
            f"model factory {spec!r} raised {type(exc).__name__}: {exc}".rstrip(": ")
        ) from exc
    if not isinstance(model, nn.Module):
        raise InputError(
            f"model factory {spec!r} returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model
