"""Batch-level scores: the gradient a client actually sends is that of a batch.

A client that trains on batches of B samples sends ∇_θ of the batch's mean loss, a
function of the whole batch x = (x_1, ..., x_B), d = B·d₁ — the setting of the I²F
reference code (Zhang et al. 2023) and of batch gradient inversion (Geiping et al.
2020). The per-sample engine scores it unchanged by treating one batch as one sample:
:class:`BatchModel` maps ``[n, B, *shape]`` to ``[n, B, C]``, and the loss looks each
batch's labels up by its number. Every score is then the batch's, and each sample's
block of the batch's I²F error vector (:mod:`leakaudit.scores.attribution`) says
which samples the batch's noise protects least.

Batches mirror a ``DataLoader(dataset, batch_size=B, shuffle=..., drop_last=...,
generator=torch.Generator().manual_seed(seed))`` (:meth:`Batching.batches`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from leakaudit.scores.batching import Batching
from leakaudit.scores.engine import concat_results, score_samples
from leakaudit.scores.losses import stable_cross_entropy
from leakaudit.scores.names import I2F
from leakaudit.scores.options import LossFn, ScoreOptions, ScoreResult


class BatchModel(nn.Module):
    """``model`` applied to batches of batches: ``[n, B, *shape] -> [n, B, C]``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.train(model.training)

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x.flatten(0, 1))
        return out.reshape(x.shape[0], x.shape[1], *out.shape[1:])


def batch_loss(loss: LossFn, labels: Tensor) -> LossFn:
    """The loss of one batch-as-sample: ``(logits [1, B, C], batch number [1]) -> scalar``.

    Args:
        loss: the client's loss over a batch, ``(logits [B, C], labels [B]) -> mean``.
        labels: ``[n_batches, B]`` each batch's labels.
    """

    def of_batch(out: Tensor, number: Tensor) -> Tensor:
        return loss(out.flatten(0, 1), labels.index_select(0, number).flatten())

    return of_batch


class _Batches(Dataset[Any]):
    """Batch k of ``dataset`` as one sample ``(x [B, *shape], k)``."""

    def __init__(self, dataset: Any, members: list[list[int]]) -> None:
        self.dataset, self.members = dataset, members

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, k: int) -> tuple[Tensor, Tensor]:
        xs = [torch.as_tensor(self.dataset[i][0]) for i in self.members[k]]
        return torch.stack(xs), torch.tensor(k)


@dataclass
class BatchScores:
    """Scores of every batch and each sample's part.

    Attributes:
        batches: one row per batch (``indices`` are batch numbers, ``labels`` the first
            sample's label); ``i2f_blocks`` and ``i2f_blocks_unit_sigma`` ``[n, B]``
            among the diagnostics when ``i2f`` was computed.
        members: each batch's dataset positions.
        labels: each batch's labels.
    """

    batches: ScoreResult
    members: list[list[int]]
    labels: list[list[int]]

    def per_sample(self) -> ScoreResult:
        """One row per scored sample, in dataset order (see :func:`per_sample`)."""
        return per_sample(self)


def score_batches(
    model: nn.Module,
    dataset: Any,
    batching: Batching,
    options: ScoreOptions | None = None,
    *,
    progress: Callable[[int], None] | None = None,
    score: Callable[..., ScoreResult] = score_samples,
) -> BatchScores:
    """Score the gradient of every batch the client's loader would form.

    Args:
        model: the classifier ``[B, *shape] -> [B, C]``.
        dataset: map-style, yielding ``(x, y)`` with integer labels.
        batching: the client's batching.
        options: as for :func:`~leakaudit.scores.engine.score_samples`; ``loss`` is the
            mean loss of a batch (cross-entropy when ``None``); ``blocks`` is set to B and
            ``n_probes`` rounded up to a multiple of B (each sample's block gets at least
            one probe of its own: a batch of 16 costs at least 16 probe sequences).
        progress: ``progress(n)`` with the number of samples finished, a batch at a time.
        score: scores one run, called as :func:`~leakaudit.scores.engine.score_samples`
            (``score(model, data, options, progress=...)``); a sharded scan passes one
            that spreads the run's chunks over processes.

    The batches of one size are scored in one run (a smaller last batch in a second);
    a run seeds its random vectors by batch number within the run.

    Raises:
        ValueError: no batch to score.
    """
    options = options or ScoreOptions()
    members = batching.batches(len(dataset))
    groups = _equal_sizes(members)
    labels = [[int(dataset[i][1]) for i in m] for m in members]
    parts = []
    for start, stop in groups:
        table = torch.tensor(labels[start:stop], dtype=torch.int64)
        size = len(members[start])
        opts = replace(
            options,
            loss=batch_loss(options.loss or stable_cross_entropy, table),
            blocks=size,
            n_probes=-(-options.n_probes // size) * size,  # a multiple of B: each block its own
        )
        data = _Range(_Batches(dataset, members), start, stop)
        count = None if progress is None else _times(progress, size)
        part = score(BatchModel(model), data, opts, progress=count)
        part.indices = part.indices + start
        parts.append(_one_block(part) if size == 1 else part)
    return BatchScores(_join(parts), members, labels)


def _times(progress: Callable[[int], None], size: int) -> Callable[[int], None]:
    return lambda n: progress(n * size)


def _equal_sizes(members: list[list[int]]) -> list[tuple[int, int]]:
    """Runs of batches of one size (all but possibly the last batch have size B)."""
    if not members:
        raise ValueError("no batch to score: the data is empty or smaller than one batch")
    if len(members) > 1 and len(members[-1]) != len(members[0]):
        return [(0, len(members) - 1), (len(members) - 1, len(members))]
    return [(0, len(members))]


class _Range(Dataset[Any]):
    """Batches ``start .. stop - 1`` of ``data``, numbered from 0."""

    def __init__(self, data: _Batches, start: int, stop: int) -> None:
        self.data, self.start, self.stop = data, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, k: int) -> tuple[Tensor, Tensor]:
        x, _ = self.data[self.start + k]
        return x, torch.tensor(k)


def _one_block(part: ScoreResult) -> ScoreResult:
    """Batches of one sample: the one block is the whole I²F error."""
    if I2F in part.scores and "i2f_unit_sigma" in part.diagnostics:
        part.diagnostics["i2f_blocks"] = part.scores[I2F][:, None]
        part.diagnostics["i2f_blocks_unit_sigma"] = part.diagnostics["i2f_unit_sigma"][:, None]
    return part


def _join(parts: list[ScoreResult]) -> ScoreResult:
    """One result of the runs; the ``[n, B]`` diagnostics padded with NaN to the widest."""
    if len(parts) == 1:
        return parts[0]
    blocks = [k for k in parts[0].diagnostics if parts[0].diagnostics[k].ndim > 1]
    ragged = {k: [p.diagnostics.pop(k) for p in parts] for k in blocks}
    out = concat_results(parts)
    for k, values in ragged.items():
        width = max(v.shape[1] for v in values)
        out.diagnostics[k] = torch.cat(
            [
                torch.nn.functional.pad(v, (0, width - v.shape[1]), value=float("nan"))
                for v in values
            ]
        )
    return out


def per_sample(scores: BatchScores) -> ScoreResult:
    """The report's rows: every sample of a scored batch, in dataset order.

    Each row carries its batch's scores, except ``i2f``, which is the sample's own block
    of the batch's I²F error (so ranking by it names the samples the batch's noise
    protects least); the batch's own I²F is the diagnostic ``batch_i2f``. ``batch`` is
    the batch number, and ``i2f_unit_sigma`` the sample's block at σ = 1 (so the σ
    what-if is the noise that lifts every sample's block to the target).
    """
    res = scores.batches
    rows = [(pos, k, j) for k, m in enumerate(scores.members) for j, pos in enumerate(m)]
    rows.sort()
    pos = torch.tensor([r[0] for r in rows], dtype=torch.int64)
    k = torch.tensor([r[1] for r in rows], dtype=torch.int64)
    j = torch.tensor([r[2] for r in rows], dtype=torch.int64)
    out_scores = {name: v[k] for name, v in res.scores.items()}
    diag = {n: v[k] for n, v in res.diagnostics.items() if v.ndim == 1}
    diag["batch"] = k
    if I2F in res.scores and "i2f_blocks" in res.diagnostics:
        diag["batch_i2f"] = res.scores[I2F][k]
        out_scores[I2F] = res.diagnostics["i2f_blocks"][k, j]
        diag["i2f_unit_sigma"] = res.diagnostics["i2f_blocks_unit_sigma"][k, j]
    labels = torch.tensor([scores.labels[r[1]][r[2]] for r in rows], dtype=torch.int64)
    return replace(res, indices=pos, labels=labels, scores=out_scores, diagnostics=diag)
