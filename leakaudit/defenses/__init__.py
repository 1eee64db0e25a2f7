"""Client-side gradient defences, by name: ``none``, ``gaussian``, ``laplace``,
``pruning``, ``dp``."""

from __future__ import annotations

from typing import Any

from leakaudit.defenses.base import Defense
from leakaudit.defenses.dp import DPClipNoise
from leakaudit.defenses.noise import GaussianNoise, LaplaceNoise, NoDefense
from leakaudit.defenses.pruning import Pruning

#: name → (class, {parameter: type}) for configuration and the CLI.
DEFENSES: dict[str, tuple[type[Defense], dict[str, type]]] = {
    "none": (NoDefense, {}),
    "gaussian": (GaussianNoise, {"sigma": float}),
    "laplace": (LaplaceNoise, {"scale": float}),
    "pruning": (Pruning, {"ratio": float}),
    "dp": (DPClipNoise, {"clip": float, "sigma": float}),
}


def make_defense(kind: str, **params: Any) -> Defense:
    """Build a defence by name; ``ValueError`` names a bad kind or parameter."""
    if kind not in DEFENSES:
        raise ValueError(f"unknown defense {kind!r}; choose from: {', '.join(DEFENSES)}")
    cls, fields = DEFENSES[kind]
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ValueError(
            f"defense {kind!r} has no parameter {unknown[0]!r}; it takes: "
            f"{', '.join(fields) or 'nothing'}"
        )
    missing = sorted(set(fields) - set(params))
    if missing:
        raise ValueError(f"defense {kind!r} needs parameter {missing[0]!r}")
    return cls(**{k: float(v) for k, v in params.items()})


__all__ = [
    "DEFENSES",
    "DPClipNoise",
    "Defense",
    "GaussianNoise",
    "LaplaceNoise",
    "NoDefense",
    "Pruning",
    "make_defense",
]
