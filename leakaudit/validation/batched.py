"""Which client batches ``validate --batch-size B`` attacks: the loader's own batches.

The batches are those the batch scan scored (:meth:`leakaudit.scores.batching.Batching.batches`:
the seeded shuffle, ``drop_last``), so each attacked gradient is one the scan scored.
Only whole batches of B samples are attacked (a smaller last batch is not).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from leakaudit.scores.batching import Batching
from leakaudit.validation.selection import stratified_indices


def batch_rows(
    positions: Tensor,
    risk: Tensor,
    batching: Batching,
    dataset_size: int,
    *,
    n_samples: int,
    indices: Sequence[int] | None,
    seed: int,
) -> tuple[Tensor, Tensor]:
    """The scored rows to attack, whole batches one after another, and their batch numbers.

    Args:
        positions: ``[N]`` dataset position of each scored row.
        risk: ``[N]`` oriented risk of each row (larger = riskier).
        batching: the client's batching; its batches are over ``dataset_size`` positions.
        dataset_size: samples in the dataset.
        n_samples: samples to attack, rounded up to whole batches, the batches stratified
            over the ranking of each batch's riskiest sample
            (:func:`~leakaudit.validation.selection.stratified_indices`).
        indices: dataset positions instead: the batches that hold them, in that order.
        seed: seeds the stratified draw.

    Returns:
        ``([m·B] rows, [m·B] batch numbers)``.

    Raises:
        ValueError: B larger than the dataset, no whole batch scored, or an index in none.
    """
    size = batching.size
    if size > dataset_size:
        raise ValueError(f"batch size {size} is larger than the {dataset_size} samples")
    where = {int(p): k for k, p in enumerate(positions.tolist())}
    whole = {
        k: [where[p] for p in m]
        for k, m in enumerate(batching.batches(dataset_size))
        if len(m) == size and all(p in where for p in m)
    }
    if not whole:
        raise ValueError(f"no whole batch of {size} samples was scored")
    if indices is not None:
        chosen = _holding(whole, [where.get(int(i)) for i in indices], indices, size)
    else:
        numbers = list(whole)
        worst = torch.stack([_riskiest(risk[whole[k]]) for k in numbers])
        if not bool(torch.isfinite(worst).any()):
            raise ValueError("no batch has a finite risk score to stratify by")
        picks = stratified_indices(worst, -(-n_samples // size), seed)
        chosen = [numbers[int(p)] for p in picks]
    rows = [r for k in chosen for r in whole[k]]
    batches = torch.tensor(chosen, dtype=torch.long).repeat_interleave(size)
    return torch.tensor(rows, dtype=torch.long), batches


def _riskiest(risk: Tensor) -> Tensor:
    """The largest finite risk of a batch, ``-inf`` when none is finite."""
    r = risk.double()
    return torch.where(torch.isfinite(r), r, torch.tensor(float("-inf"))).amax()


def _holding(
    whole: dict[int, list[int]], rows: list[int | None], indices: Sequence[int], size: int
) -> list[int]:
    """The batch numbers holding ``rows`` (the rows of ``indices``), each once, in order.

    Raises:
        ValueError: naming the first index in no whole scored batch.
    """
    of_row = {r: k for k, members in whole.items() for r in members}
    chosen: list[int] = []
    for i, row in zip(indices, rows, strict=True):
        if row is None or row not in of_row:
            raise ValueError(f"sample {i} is not in a whole scored batch of {size}")
        if of_row[row] not in chosen:
            chosen.append(of_row[row])
    return chosen
