"""What a client-side gradient defence looks like to leakaudit.

A defence maps the shared gradient g* to g* + δ. For I²F (Zhang et al. 2023) only the
first two moments of δ matter: E‖Mδ‖² = ‖M b‖² + s² tr(MᵀM) for any matrix M, where
b = E[δ] is a deterministic *bias* (clipping, pruning) and s² the per-coordinate
variance of the zero-mean, independent *noise* part. Each defence therefore states
``bias(g)`` and ``noise_variance(g)``; attacks use ``apply(g)`` to draw a defended
gradient.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor


class DefenseError(ValueError):
    """A bad defence kind or parameter.

    Attributes:
        key: what is bad, spelled as in the ``defense`` config section: ``"kind"``,
            ``"params"`` (a missing parameter) or ``"params.<name>"``.
        detail: the message without the defence and parameter names, for the config's
            ``defense.<key>: <detail>`` errors.
    """

    def __init__(self, key: str, detail: str, message: str | None = None) -> None:
        super().__init__(message or detail)
        self.key = key
        self.detail = detail


class Defense(ABC):
    """A perturbation model of the shared gradient.

    Subclasses are frozen dataclasses: their fields are the defence's parameters (names,
    types and defaults, read by :func:`leakaudit.defenses.make_defense` and the config),
    and their ``__post_init__`` is the one place that checks the values.

    All methods take flat per-sample gradients ``g`` of shape ``[B, P]``.
    """

    kind: ClassVar[str]

    def require(self, ok: bool, name: str, detail: str) -> None:
        """Raise :class:`DefenseError` for parameter ``name`` unless ``ok``.

        Args:
            ok: whether the value is acceptable.
            name: the parameter (a dataclass field).
            detail: what is wrong, e.g. ``"must be >= 0, got -1.0"``.
        """
        if not ok:
            raise DefenseError(f"params.{name}", detail, f"{self.kind} {name} {detail}")

    @abstractmethod
    def bias(self, g: Tensor) -> Tensor | None:
        """Deterministic part of δ, shape ``[B, P]``; ``None`` when it is zero."""

    @abstractmethod
    def noise_variance(self, g: Tensor) -> Tensor:
        """Per-coordinate variance of the zero-mean noise part of δ, shape ``[B]``."""

    @abstractmethod
    def sample_noise(self, g: Tensor, generator: torch.Generator | None) -> Tensor:
        """One draw of the noise part of δ, shape ``[B, P]`` (zeros when noiseless)."""

    def apply(self, g: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The defended gradient g + δ that the server sees, shape ``[B, P]``."""
        out = g + self.sample_noise(g, generator)
        b = self.bias(g)
        return out if b is None else out + b

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The defence's parameters, for reports."""

    def describe(self) -> dict[str, Any]:
        """``{"kind": ..., **params}`` as it appears in a report."""
        return {"kind": self.kind, **self.params()}


def _randn_like(g: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``g``, drawn on the generator's device."""
    if generator is None:
        return torch.randn_like(g)
    noise = torch.randn(g.shape, generator=generator, dtype=g.dtype, device=generator.device)
    return noise.to(g.device)
