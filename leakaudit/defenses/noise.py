"""Additive noise defences: Gaussian and Laplace (Zhu et al. 2019, §5; Zhang et al. 2023)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from leakaudit.defenses.base import Defense, _randn_like


@dataclass(frozen=True)
class NoDefense(Defense):
    """The client shares its gradient as is (δ = 0)."""

    kind: ClassVar[str] = "none"

    def bias(self, g: Tensor) -> Tensor | None:
        return None

    def noise_variance(self, g: Tensor) -> Tensor:
        return torch.zeros(g.shape[0], dtype=g.dtype, device=g.device)

    def sample_noise(self, g: Tensor, generator: torch.Generator | None) -> Tensor:
        return torch.zeros_like(g)

    def params(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class GaussianNoise(Defense):
    """δ ~ N(0, σ² I); σ = 0.01 unless given (the default defence of a scan)."""

    sigma: float = 0.01
    kind: ClassVar[str] = "gaussian"

    def __post_init__(self) -> None:
        self.require(self.sigma >= 0, "sigma", f"must be >= 0, got {self.sigma}")

    def bias(self, g: Tensor) -> Tensor | None:
        return None

    def noise_variance(self, g: Tensor) -> Tensor:
        return torch.full((g.shape[0],), self.sigma**2, dtype=g.dtype, device=g.device)

    def sample_noise(self, g: Tensor, generator: torch.Generator | None) -> Tensor:
        return self.sigma * _randn_like(g, generator)

    def params(self) -> dict[str, Any]:
        return {"sigma": self.sigma}


@dataclass(frozen=True)
class LaplaceNoise(Defense):
    """δ_i ~ Laplace(0, b) independently; variance 2b² per coordinate."""

    scale: float
    kind: ClassVar[str] = "laplace"

    def __post_init__(self) -> None:
        self.require(self.scale >= 0, "scale", f"must be >= 0, got {self.scale}")

    def bias(self, g: Tensor) -> Tensor | None:
        return None

    def noise_variance(self, g: Tensor) -> Tensor:
        return torch.full((g.shape[0],), 2 * self.scale**2, dtype=g.dtype, device=g.device)

    def sample_noise(self, g: Tensor, generator: torch.Generator | None) -> Tensor:
        # Inverse CDF of a uniform draw on (-1/2, 1/2): -b sign(u) log(1 - 2|u|).
        if generator is None:
            u = torch.rand_like(g)
        else:
            u = torch.rand(g.shape, generator=generator, dtype=g.dtype, device=generator.device)
            u = u.to(g.device)
        u = u - 0.5
        two_abs_u = (2 * u.abs()).clamp_max(1 - torch.finfo(g.dtype).eps)
        return -self.scale * torch.sign(u) * torch.log1p(-two_abs_u)

    def params(self) -> dict[str, Any]:
        return {"scale": self.scale}
