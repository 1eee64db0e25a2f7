"""Stream samples from any data form the engine accepts, in chunks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

Sample = tuple[int, Tensor, Tensor]


def iter_samples(data: Any, skip: int = 0) -> Iterator[Sample]:
    """Yield ``(index, x, y)`` one sample at a time, skipping the first ``skip``.

    Accepts ``(inputs [N, ...], labels [N])``, a map-style Dataset of ``(x, y)``, an
    iterable of ``(x [B, ...], y [B])`` batches (e.g. a DataLoader), or a
    :class:`Positioned` subset (whose samples keep their dataset positions as indices).
    """
    if isinstance(data, Positioned):
        for j in range(skip, len(data.positions)):
            x, y = data.dataset[data.positions[j]]
            yield data.positions[j], torch.as_tensor(x), torch.as_tensor(y)
        return
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        X, Y = data
        if len(X) != len(Y):
            raise ValueError(f"{len(X)} inputs but {len(Y)} labels")
        for i in range(skip, len(X)):
            yield i, X[i], torch.as_tensor(Y[i])
        return
    if isinstance(data, Dataset) and not isinstance(data, DataLoader) and hasattr(data, "__len__"):
        for i in range(skip, len(data)):
            x, y = data[i]
            yield i, torch.as_tensor(x), torch.as_tensor(y)
        return
    if isinstance(data, Iterable):
        i = 0
        for batch in data:
            X, Y = batch[0], batch[1]
            for x, y in zip(X, Y):
                if i >= skip:
                    yield i, x, torch.as_tensor(y)
                i += 1
        return
    raise TypeError(
        "data must be (inputs, labels) tensors, a Dataset of (x, y), or an iterable of batches"
    )


def chunks(samples: Iterator[Sample], size: int) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Group samples into ``(indices [b], X [b, ...], Y [b])`` with b ≤ ``size``."""
    buf: list[Sample] = []
    for s in samples:
        buf.append(s)
        if len(buf) == size:
            yield _stack(buf)
            buf = []
    if buf:
        yield _stack(buf)


def _stack(buf: list[Sample]) -> tuple[Tensor, Tensor, Tensor]:
    idx = torch.tensor([s[0] for s in buf], dtype=torch.int64)
    X = torch.stack([s[1] for s in buf])
    Y = torch.stack([s[2].reshape(()) for s in buf])
    if not Y.is_floating_point():
        Y = Y.to(torch.int64)
    return idx, X, Y


class Positioned(Dataset[Any]):
    """Some samples of a map-style dataset, scored under their dataset positions.

    The engine seeds each sample's random vectors by its index, so scoring a subset this
    way gives every sample exactly the scores a scan of the whole dataset gives it.

    Args:
        dataset: map-style, yielding ``(x, y)``.
        positions: the positions to score, in this order (no repeats).
    """

    def __init__(self, dataset: Any, positions: Iterable[int]) -> None:
        self.dataset = dataset
        self.positions = [int(p) for p in positions]
        if len(set(self.positions)) != len(self.positions):
            raise ValueError("positions repeat samples")

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, j: int) -> Any:
        return self.dataset[self.positions[j]]
