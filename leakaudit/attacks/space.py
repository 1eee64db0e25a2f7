"""Where pixels live: the model's input space and its valid box.

Attacks work in the model's input space (after the dataset's transforms). Quality
metrics want images in [0, 1]. An :class:`InputSpace` maps between the two and gives
the box that Inverting Gradients clamps to (Geiping et al. 2020: the image of [0, 1]
under the normalisation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class InputSpace:
    """Model-space pixels ``x = (u − mean) / std`` for raw pixels ``u`` in ``[lo, hi]``.

    Attributes:
        mean: per-channel mean of the normalisation (one value broadcasts to all).
        std: per-channel standard deviation of the normalisation.
        lo: smallest raw pixel value (before normalisation).
        hi: largest raw pixel value.
    """

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    lo: float = 0.0
    hi: float = 1.0

    def __post_init__(self) -> None:
        if not self.hi > self.lo:
            raise ValueError(f"data range must have hi > lo, got ({self.lo}, {self.hi})")
        if len(self.mean) != len(self.std):
            raise ValueError("normalisation mean and std must have the same length")
        if any(not s > 0 for s in self.std):
            raise ValueError("normalisation std must be > 0")

    @classmethod
    def from_range(cls, lo: float, hi: float) -> InputSpace:
        """Inputs fed to the model as they are, valued in ``[lo, hi]``."""
        return cls(lo=float(lo), hi=float(hi))

    @classmethod
    def from_normalization(
        cls, mean: Sequence[float], std: Sequence[float], lo: float = 0.0, hi: float = 1.0
    ) -> InputSpace:
        """Raw pixels in ``[lo, hi]`` normalised per channel as ``(u − mean) / std``."""
        return cls(tuple(float(m) for m in mean), tuple(float(s) for s in std), lo, hi)

    def _per_channel(self, values: tuple[float, ...], like: Tensor) -> Tensor:
        t = torch.tensor(values, dtype=like.dtype, device=like.device)
        if like.dim() >= 3 and t.numel() > 1:
            return t.view(-1, *([1] * (like.dim() - 2)))
        return t.reshape(()) if t.numel() == 1 else t

    def bounds(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """The valid box in model space, broadcastable to ``like`` ``[B, C, ...]``."""
        mean = self._per_channel(self.mean, like)
        std = self._per_channel(self.std, like)
        return (self.lo - mean) / std, (self.hi - mean) / std

    def clamp(self, x: Tensor) -> Tensor:
        """Project model-space inputs ``[B, C, ...]`` onto the valid box."""
        lo, hi = self.bounds(x)
        return torch.maximum(torch.minimum(x, hi), lo)

    def to_unit(self, x: Tensor) -> Tensor:
        """Model-space inputs ``[B, C, ...]`` → raw pixels rescaled to [0, 1] (unclipped)."""
        mean = self._per_channel(self.mean, x)
        std = self._per_channel(self.std, x)
        return (x * std + mean - self.lo) / (self.hi - self.lo)
