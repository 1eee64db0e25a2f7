"""DP-SGD style defence for one sample (Abadi et al. 2016): clip the gradient to norm
C, then add N(0, (σC)² I)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from leakaudit.defenses.base import Defense, _randn_like


def clip_rows(g: Tensor, max_norm: float) -> Tensor:
    """Scale each row of ``g`` ([B, P]) to norm at most ``max_norm``."""
    norms = torch.linalg.vector_norm(g, dim=1, keepdim=True)
    factor = (max_norm / norms.clamp_min(torch.finfo(g.dtype).tiny)).clamp_max(1.0)
    return g * factor


@dataclass(frozen=True)
class DPClipNoise(Defense):
    """δ = (clip_C(g*) − g*) + N(0, (σ·C)² I)."""

    clip: float
    sigma: float
    kind: ClassVar[str] = "dp"

    def __post_init__(self) -> None:
        self.require(self.clip > 0, "clip", f"must be > 0, got {self.clip}")
        self.require(
            self.sigma >= 0, "sigma", f"(the noise multiplier) must be >= 0, got {self.sigma}"
        )

    def bias(self, g: Tensor) -> Tensor | None:
        return clip_rows(g, self.clip) - g

    def noise_variance(self, g: Tensor) -> Tensor:
        var = (self.sigma * self.clip) ** 2
        return torch.full((g.shape[0],), var, dtype=g.dtype, device=g.device)

    def sample_noise(self, g: Tensor, generator: torch.Generator | None) -> Tensor:
        return self.sigma * self.clip * _randn_like(g, generator)

    def params(self) -> dict[str, Any]:
        return {"clip": self.clip, "sigma": self.sigma}
