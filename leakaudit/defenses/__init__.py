"""Client-side gradient defences, by name: ``none``, ``gaussian``, ``laplace``,
``pruning``, ``dp``.

Each defence is a frozen dataclass; its fields are its parameters (names, types and
defaults) and its ``__post_init__`` checks them. :data:`DEFENSES` (a
:class:`~leakaudit.registry.Registry`) only maps a kind to its class, and
:func:`make_defense` builds one from a name and plain values (the config and the
``--defense`` flag) by reading those fields.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from leakaudit.defenses.base import Defense, DefenseError
from leakaudit.defenses.dp import DPClipNoise
from leakaudit.defenses.noise import GaussianNoise, LaplaceNoise, NoDefense
from leakaudit.defenses.pruning import Pruning
from leakaudit.registry import Registry, UnknownNameError

#: kind → class, in the order docs and messages list them; the kind is the class's own
#: ``kind`` attribute.
DEFENSES: Registry[type[Defense]] = Registry(
    "defense",
    ((cls.kind, cls) for cls in (NoDefense, GaussianNoise, LaplaceNoise, Pruning, DPClipNoise)),
)


def parameters(cls: type[Defense]) -> dict[str, type]:
    """A defence's parameters, name → type, read from its dataclass fields."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}  # type: ignore[arg-type]


def parameter_defaults(cls: type[Defense]) -> dict[str, Any]:
    """The parameters that have a default, name → value (``gaussian``: ``sigma = 0.01``)."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    return {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}


def _convert(kind: str, name: str, tp: type, value: Any) -> Any:
    """``value`` as the parameter's type (``"0.5"`` and ``1`` → ``float``)."""
    try:
        return tp(value)
    except (TypeError, ValueError):
        raise DefenseError(
            f"params.{name}",
            f"expected {tp.__name__}, got {value!r}",
            f"defense {kind!r}: {name} must be a {tp.__name__}, got {value!r}",
        ) from None


def make_defense(kind: str, **params: Any) -> Defense:
    """Build a defence by name from plain parameter values.

    Args:
        kind: a key of :data:`DEFENSES`.
        **params: the parameters; each is converted to its field's type, and a
            parameter with a default may be left out.

    Raises:
        DefenseError: a ``ValueError`` naming the unknown kind, the unknown, missing or
            ill-typed parameter, or the value the defence's own checks refuse.
    """
    try:
        cls = DEFENSES[kind]
    except UnknownNameError as exc:
        raise DefenseError("kind", str(exc)) from None
    takes = parameters(cls)
    for name in params:
        if name not in takes:
            it_takes = ", ".join(takes) or "nothing"
            detail = f"defense {kind!r} has no parameter {name!r}; it takes: {it_takes}"
            raise DefenseError(f"params.{name}", detail)
    defaults = parameter_defaults(cls)
    for name in takes:
        if name not in params and name not in defaults:
            raise DefenseError("params", f"defense {kind!r} needs parameter {name!r}")
    return cls(**{name: _convert(kind, name, takes[name], v) for name, v in params.items()})


__all__ = [
    "DEFENSES",
    "DPClipNoise",
    "Defense",
    "DefenseError",
    "GaussianNoise",
    "LaplaceNoise",
    "NoDefense",
    "Pruning",
    "make_defense",
    "parameter_defaults",
    "parameters",
]
