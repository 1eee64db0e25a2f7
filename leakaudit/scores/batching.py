"""How a client batches its data: the batches its ``DataLoader`` yields, reproduced."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Batching:
    """How the client batches its data.

    Attributes:
        size: B, samples per batch.
        shuffle: draw a seeded random permutation (as ``DataLoader(shuffle=True)``).
        seed: the seed of the loader's generator.
        drop_last: drop the last batch when it has fewer than B samples (it is kept, and
            scored as the smaller batch it is, otherwise).
    """

    size: int
    shuffle: bool = True
    seed: int = 0
    drop_last: bool = False

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.size}")

    def batches(self, n: int) -> list[list[int]]:
        """The dataset positions of each batch, in the order the client's loader yields them."""
        order = list(range(n))
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed)
            # A DataLoader's iterator first draws its workers' base seed from the generator.
            torch.empty((), dtype=torch.int64).random_(generator=gen)
            order = torch.randperm(n, generator=gen).tolist()
        out = [order[i : i + self.size] for i in range(0, n, self.size)]
        if out and self.drop_last and len(out[-1]) < self.size:
            out.pop()
        return out
