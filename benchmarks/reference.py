"""A one-sample-at-a-time implementation in the style of the papers' reference code.

λ_max(JᵀJ) by SciPy ``eigsh`` on the P-dimensional operator JJᵀ (same nonzero spectrum),
each product by plain autograd double backward; I²F-lb's E‖Jᵀδ‖² by drawing Gaussian
δ and one double backward each. Used only by the benchmark, never by leakaudit.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import Tensor, nn


def reference_scores(
    model: nn.Module, x: Tensor, y: Tensor, *, sigma: float, n_probes: int, tol: float, seed: int
) -> tuple[float, float]:
    """``(lavp_l2_max, i2f_lb)`` for one sample ``x`` ``[C, H, W]``."""
    params = [p for p in model.parameters() if p.requires_grad]
    xr = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(xr[None]), y[None])
    g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, params, create_graph=True)])
    w = torch.zeros_like(g, requires_grad=True)
    (h,) = torch.autograd.grad(g, xr, w, create_graph=True)  # Jᵀw, linear in w
    P = g.numel()

    def jt(u: Tensor) -> Tensor:
        return torch.autograd.grad(g, xr, u, retain_graph=True)[0]

    def jjt(u_np: np.ndarray) -> np.ndarray:
        u = torch.from_numpy(np.ascontiguousarray(u_np, dtype=np.float32)).reshape(-1)
        jtu = jt(u)
        (jv,) = torch.autograd.grad(h, w, jtu, retain_graph=True)
        return jv.detach().double().numpy()

    op = LinearOperator((P, P), matvec=jjt, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(P)
    lam = float(eigsh(op, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)[0])
    gen = torch.Generator().manual_seed(seed)
    sq = [jt(sigma * torch.randn(P, generator=gen)).pow(2).sum().item() for _ in range(n_probes)]
    return 2 * lam, float(np.sqrt(np.mean(sq)) / lam)
