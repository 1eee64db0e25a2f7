"""Which samples ``validate`` attacks: stratified over the risk ranking, or given."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor


def stratified_indices(risk: Tensor, n_samples: int, seed: int = 0) -> Tensor:
    """Pick ``n_samples`` positions spread evenly over the risk ranking.

    The N samples are ranked riskiest first (``risk`` is oriented so larger = riskier;
    ties by position), cut into ``n_samples`` contiguous strata of (nearly) equal size,
    and one sample is drawn uniformly from each stratum. Non-finite risks are skipped.

    Args:
        risk: ``[N]`` oriented risk values.
        n_samples: how many to pick (all finite ones if fewer exist).
        seed: seeds the draw inside each stratum.

    Returns:
        ``[n]`` int64 positions, riskiest first.
    """
    r = risk.detach().double().cpu().numpy()
    finite = np.flatnonzero(np.isfinite(r))
    order = finite[np.argsort(-r[finite], kind="stable")]
    if n_samples >= order.size:
        return torch.from_numpy(order.copy()).long()
    rng = np.random.default_rng(seed)
    picks = [int(rng.choice(stratum)) for stratum in np.array_split(order, n_samples)]
    return torch.tensor(picks, dtype=torch.long)


def select(
    risk: Tensor, selection: str | Sequence[int], n_samples: int, risk_name: str, seed: int
) -> tuple[Tensor, dict[str, Any]]:
    """The positions to attack, riskiest first, and how they were chosen (for the report).

    Args:
        risk: ``[N]`` oriented risk values (:func:`leakaudit.direction.orient`).
        selection: ``"stratified"`` (:func:`stratified_indices`), or positions.
        n_samples: how many to pick under ``"stratified"``.
        risk_name: the score ``risk`` comes from.
        seed: seeds the stratified draw.

    Returns:
        ``([n] int64 positions, {"method": ..., ...})``.

    Raises:
        ValueError: an unknown selection method, or positions out of range.
    """
    n_all = risk.shape[0]
    if isinstance(selection, str):
        if selection != "stratified":
            raise ValueError("selection must be 'stratified' or a list of indices")
        return stratified_indices(risk, n_samples, seed), {"method": "stratified", "by": risk_name}
    idx = torch.as_tensor(list(selection), dtype=torch.long)
    if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= n_all:
        raise ValueError(f"indices must be non-empty and in [0, {n_all - 1}]")
    return idx[torch.argsort(-risk[idx], stable=True)], {"method": "indices"}


def select_batches(risk: Tensor, group: int, risk_name: str) -> tuple[Tensor, dict[str, Any]]:
    """Every client batch of ``group`` consecutive samples, riskiest batch first.

    A batch is as risky as its riskiest sample (non-finite risks count as the least
    risky); ties keep the given order, and a batch's samples stay together in their order.

    Args:
        risk: ``[n]`` oriented risk values, ``n`` a multiple of ``group``.
        group: B, samples per batch.
        risk_name: the score ``risk`` comes from.

    Returns:
        ``([n] int64 positions, {"method": "batches", ...})``.

    Raises:
        ValueError: ``n`` is not a positive multiple of ``group``.
    """
    n = risk.shape[0]
    if n == 0 or n % group:
        raise ValueError(f"{n} samples are not whole batches of {group}")
    r = risk.detach().double().cpu()
    r = torch.where(torch.isfinite(r), r, torch.tensor(-np.inf, dtype=torch.float64))
    order = torch.argsort(-r.view(-1, group).amax(dim=1), stable=True)
    idx = (order[:, None] * group + torch.arange(group)).flatten()
    return idx, {"method": "batches", "by": risk_name, "batch_size": group}
