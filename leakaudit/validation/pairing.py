"""Which reconstruction of a batch is which sample: the pairing that maximises total PSNR.

An attack on a batch's gradient reconstructs its B inputs in no particular order (the
mean loss is symmetric in them). Each reconstruction is paired with one original by the
assignment that maximises the batch's total PSNR, found with the Hungarian method
(``scipy.optimize.linear_sum_assignment``) on the B×B matrix of −PSNR = 10·log10(MSE):
the standard practice of batch gradient inversion benchmarks (breaching, Geiping et al.
2020). At B = 1 the pairing is the identity.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from leakaudit.metrics.quality import MSE_FLOOR


def pair_batches(reconstructions: Tensor, originals: Tensor, group: int) -> Tensor:
    """For each original, the reconstruction paired with it.

    Args:
        reconstructions: ``[n, C, H, W]`` in [0, 1], batch by batch (``n`` a multiple of
            ``group``), each batch's in any order.
        originals: ``[n, C, H, W]`` in [0, 1], batch by batch.
        group: B, samples per batch.

    Returns:
        ``[n]`` int64 positions into ``reconstructions``: ``reconstructions[out]`` is
        paired with ``originals`` row by row, within each batch.
    """
    n = originals.shape[0]
    if group == 1:
        return torch.arange(n)
    rec = reconstructions.detach().double().cpu().flatten(1)
    ref = originals.detach().double().cpu().flatten(1)
    out = torch.empty(n, dtype=torch.int64)
    for start in range(0, n, group):
        a, b = ref[start : start + group], rec[start : start + group]
        mse = (a[:, None] - b[None]).pow(2).mean(dim=-1)  # [original, reconstruction]
        cost = 10.0 * np.log10(mse.clamp_min(MSE_FLOOR).numpy())  # −PSNR at data range 1
        rows, cols = linear_sum_assignment(cost)
        out[start + rows] = torch.from_numpy(cols + start).long()
    return out
