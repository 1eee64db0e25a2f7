"""The scoring inside ``validate`` and ``calibrate`` sharded over the ranks of a torchrun
job: some dataset positions, no partial results.

Each rank scores whole chunks of the list of positions (:func:`~leakaudit.distributed.shard`
over the list), each sample seeded by its dataset position as in a scan, so the merged
rows are those :func:`~leakaudit.scores.engine.score_samples` gives one process, bit for
bit. The rows are exchanged as tensors (:mod:`leakaudit.distributed.exchange`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from leakaudit.distributed import (
    ProgressFn,
    _process_group,
    _warn_if_idle,
    current_world,
    shard,
)
from leakaudit.distributed.exchange import all_gather_payloads
from leakaudit.distributed.rows import payload_rows, rows_payload
from leakaudit.resume import select_rows
from leakaudit.scores.data import Positioned
from leakaudit.scores.engine import (
    concat_results,
    planned_chunk_size,
    resolve_device,
    score_samples,
)
from leakaudit.scores.options import ScoreOptions, ScoreResult


def score_positions(
    model: nn.Module,
    dataset: Any,
    positions: Sequence[int],
    options: ScoreOptions,
    *,
    progress: ProgressFn | None = None,
) -> ScoreResult:
    """``score_samples(model, Positioned(dataset, positions), options)``, sharded over the
    job's ranks (all here outside torchrun).

    Args:
        positions: dataset positions to score (no repeats), in the order of the rows.
        progress: ``progress(done, total)`` over all ranks, shown on rank 0.

    Returns:
        The same rows on every rank, in the order of ``positions``.
    """
    world, positions = current_world(), list(positions)
    options = replace(options, chunk_size=planned_chunk_size(model, dataset, options))
    block = options.chunk_size or 1
    mine = [positions[i] for i in shard(len(positions), world, block)]
    _warn_if_idle(len(positions), world, block)
    with _process_group(world, resolve_device(options.device)) as counter:
        counter.progress, counter.total = progress, len(positions)
        fresh = None
        if mine:
            fresh = score_samples(model, Positioned(dataset, mine), options, progress=counter.add)
        counter.wait_all(progress)
        payloads = all_gather_payloads(rows_payload(fresh, {}, {}), world.size)
    parts = [r for r, _, _ in map(payload_rows, payloads) if r is not None]
    result = concat_results(parts)
    row = {p: k for k, p in enumerate(result.indices.tolist())}
    return select_rows(result, torch.tensor([row[p] for p in positions], dtype=torch.int64))


__all__ = ["score_positions"]
