"""The scoring engine: per-sample scores, batched over chunks, streamed over data."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import Tensor, nn
from torch.utils.data import Dataset

from leakaudit.scores.options import ScoreOptions, ScoreResult

#: What the engine accepts as data: a tuple ``(inputs [N, ...], labels [N])``, a
#: map-style Dataset yielding ``(x, y)``, or an iterable of ``(x [B, ...], y [B])``
#: batches such as a DataLoader.
Data = tuple[Tensor, Tensor] | Dataset | Iterable[tuple[Tensor, Tensor]]


def score_samples(
    model: nn.Module,
    data: Data,
    options: ScoreOptions | None = None,
    *,
    progress: Callable[[int], None] | None = None,
    on_chunk: Callable[[ScoreResult], None] | None = None,
    skip: int = 0,
) -> ScoreResult:
    """Score every sample of ``data`` (contract; implementation in progress)."""
    raise NotImplementedError
