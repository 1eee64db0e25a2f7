"""Gradient pruning (Zhu et al. 2019, §5.2): the client zeroes the smallest-magnitude
fraction of its gradient's entries before sharing it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from leakaudit.defenses.base import Defense


def prune_smallest(g: Tensor, ratio: float) -> Tensor:
    """Zero the ``ratio`` fraction of smallest-|g| entries of each row of ``g`` ([B, P])."""
    n_prune = round(ratio * g.shape[1])
    if n_prune <= 0:
        return g.clone()
    if n_prune >= g.shape[1]:
        return torch.zeros_like(g)
    idx = g.abs().topk(n_prune, dim=1, largest=False).indices
    return g.scatter(1, idx, 0.0)


@dataclass(frozen=True)
class Pruning(Defense):
    """δ = pruned(g*) − g*: deterministic, so I²F needs no expectation."""

    ratio: float
    kind: ClassVar[str] = "pruning"

    def __post_init__(self) -> None:
        self.require(0.0 <= self.ratio <= 1.0, "ratio", f"must be in [0, 1], got {self.ratio}")

    def bias(self, g: Tensor) -> Tensor | None:
        return prune_smallest(g, self.ratio) - g

    def noise_variance(self, g: Tensor) -> Tensor:
        return torch.zeros(g.shape[0], dtype=g.dtype, device=g.device)

    def sample_noise(self, g: Tensor, generator: torch.Generator | None) -> Tensor:
        return torch.zeros_like(g)

    def params(self) -> dict[str, Any]:
        return {"ratio": self.ratio}
