"""Batch scans (``--batch-size``) sharded over the ranks of a ``torchrun`` job.

A batch scan scores each batch's gradient as one sample of a batch dataset
(:func:`~leakaudit.scores.batches.score_batches`), in one run per batch size. Each run
is sharded as a per-sample scan is (:func:`~leakaudit.distributed.score_sharded`):
whole chunks of batches per rank, each batch's random vectors seeded by its number, so
the merged scores are those of one process, bit for bit. A batch scan keeps no partial
results. Use it inside :func:`~leakaudit.distributed.process_group`, which keeps one
process group for the runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from torch import nn

from leakaudit.distributed import IdleRankWarning, ProgressFn, score_sharded
from leakaudit.scores.options import ScoreOptions, ScoreResult


class ShardedBatches:
    """The scorer :func:`~leakaudit.scores.batches.score_batches` calls for each run,
    sharded over the job's ranks (one rank outside torchrun).

    Attributes:
        runs: each run's ``summary.distributed`` section and its batch size.
    """

    def __init__(self) -> None:
        self.runs: list[tuple[dict[str, Any], int]] = []

    def __call__(
        self,
        model: nn.Module,
        data: Any,
        options: ScoreOptions,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> ScoreResult:
        """Score every batch of ``data`` (a dataset of batches) over the ranks."""
        ids = [str(k) for k in range(len(data))]
        show = _increments(progress) if progress is not None else None
        with warnings.catch_warnings():
            if self.runs:  # the last, smaller batch alone: of course some ranks idle
                warnings.simplefilter("ignore", IdleRankWarning)
            # Each "sample" here is a whole batch; the report hashes the real samples.
            sharded = score_sharded(model, data, ids, options, "", progress=show, digests=False)
        self.runs.append((sharded.section, options.blocks))
        return sharded.result

    def section(self) -> dict[str, Any] | None:
        """The scan's ``summary.distributed``: per rank the samples of the batches it
        scored over all runs, its seconds and samples/s."""
        if not self.runs:
            return None
        first = self.runs[0][0]
        ranks = []
        for r, stats in enumerate(first["ranks"]):
            samples = sum(run["ranks"][r]["samples"] * size for run, size in self.runs)
            seconds = sum(run["ranks"][r]["seconds"] for run, _ in self.runs)
            rate = samples / seconds if seconds > 0 else None
            ranks.append(
                {**stats, "samples": samples, "seconds": seconds, "samples_per_second": rate}
            )
        return {**first, "ranks": ranks}


def _increments(progress: Callable[[int], None]) -> ProgressFn:
    """``progress(done, total)`` over all ranks as the increments ``progress(n)``."""
    last = 0

    def show(done: int, total: int) -> None:
        nonlocal last
        if done > last:
            progress(done - last)
            last = done

    return show


__all__ = ["ShardedBatches"]
