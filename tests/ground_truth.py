"""Dense float64 ground truths and tiny real-data cases shared by the engine tests.

Everything here is the obviously-correct slow path: J from ``torch.func.jacrev``,
spectra from ``torch.linalg.eigvalsh``, inverses from ``torch.linalg.solve``.
:func:`compare_matmat` checks any batched operator against its dense twin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from skimage import data as skdata
from skimage.transform import resize
from sklearn.datasets import load_digits
from torch import Tensor, nn
from torch.func import functional_call, grad, jacrev

from leakaudit.linalg.operators import BatchedOperator


def digits(n: int, size: int = 6) -> tuple[Tensor, Tensor]:
    """n scikit-learn digits, centre-cropped to 1×size×size, values in [0, 1]."""
    d = load_digits()
    lo = (8 - size) // 2
    x = torch.tensor(d.images[:n, lo : lo + size, lo : lo + size] / 16.0).unsqueeze(1)
    return x.double(), torch.tensor(d.target[:n]).long()


def photo_patches(n: int, size: int = 4) -> tuple[Tensor, Tensor]:
    """n 3×size×size patches of scikit-image's astronaut photo, labelled by patch row."""
    img = resize(skdata.astronaut(), (size * 8, size * 8), anti_aliasing=True)  # [H, W, 3] in [0,1]
    patches, labels = [], []
    for k in range(n):
        r, c = divmod(k * 3 + 1, 8)
        p = img[r * size : (r + 1) * size, c * size : (c + 1) * size]
        patches.append(np.transpose(p, (2, 0, 1)))
        labels.append(r % 10)
    return torch.tensor(np.stack(patches)).double(), torch.tensor(labels).long()


class SigmoidLeNet(nn.Module):
    """The DLG LeNet (Zhu et al. 2019) scaled down: sigmoid convs, uniform(-0.5, 0.5) init."""

    def __init__(self, c: int, s: int, classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, 4, 3, padding=1, stride=2),
            nn.Sigmoid(),
            nn.Conv2d(4, 4, 3, padding=1),
            nn.Sigmoid(),
        )
        self.fc = nn.Linear(4 * ((s + 1) // 2) ** 2, classes)
        for p in self.parameters():
            nn.init.uniform_(p, -0.5, 0.5)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.body(x).flatten(1))


class ReLUBNNet(nn.Module):
    """A ReLU CNN with BatchNorm, evaluated with running statistics."""

    def __init__(self, c: int, s: int, classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Conv2d(4, 4, 3, padding=1, stride=2),
            nn.BatchNorm2d(4),
            nn.ReLU(),
        )
        self.fc = nn.Linear(4 * ((s + 1) // 2) ** 2, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.body(x).flatten(1))


class MLP(nn.Module):
    def __init__(self, c: int, s: int, classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(c * s * s, 12), nn.Tanh(), nn.Linear(12, classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@dataclass
class Case:
    name: str
    model: nn.Module
    X: Tensor
    Y: Tensor


def make_case(name: str, n: int = 3) -> Case:
    """A tiny model and real inputs; ``name`` is ``<model>-<1ch|3ch>``."""
    torch.manual_seed(0)
    arch, ch = name.split("-")
    X, Y = digits(n, 6) if ch == "1ch" else photo_patches(n, 4)
    c, s = X.shape[1], X.shape[2]
    model = {"lenet": SigmoidLeNet, "relubn": ReLUBNNet, "mlp": MLP}[arch](c, s).double()
    if arch == "relubn":  # give BatchNorm real running statistics, then freeze them
        warm, _ = digits(64, 6) if ch == "1ch" else photo_patches(16, 4)
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model(warm)
    model.eval()
    return Case(name, model, X, Y)


CASES = ["lenet-1ch", "relubn-1ch", "mlp-1ch", "lenet-3ch", "relubn-3ch", "mlp-3ch"]


def flat_grad_fn(model: nn.Module, loss_fn=F.cross_entropy):
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def g(x: Tensor, y: Tensor) -> Tensor:
        def loss(p):
            return loss_fn(functional_call(model, (p, buffers), (x[None],)), y[None])

        gr = grad(loss)(params)
        return torch.cat([t.reshape(-1) for t in gr.values()])

    return g


@dataclass
class Dense:
    """Dense quantities of one sample."""

    J: Tensor  # [P, d]
    g: Tensor  # [P]

    @property
    def A(self) -> Tensor:
        return self.J.T @ self.J

    @property
    def H_cos(self) -> Tensor:
        u = self.g / self.g.norm()
        P = torch.eye(len(u), dtype=u.dtype) - torch.outer(u, u)
        return self.J.T @ P @ self.J / self.g.norm() ** 2

    def i2f_lb(self, bias: Tensor | None, noise_var: float) -> float:
        lam = torch.linalg.eigvalsh(self.A)[-1]
        c = 0.0 if bias is None else float((self.J.T @ bias).pow(2).sum())
        return float(torch.sqrt(c + noise_var * self.J.pow(2).sum()) / lam)

    def i2f(
        self, bias: Tensor | None, noise_var: float, damping: float = 1e-3, mode: str = "relative"
    ) -> float:
        """√E‖(A + εI)⁻¹Jᵀδ‖² with ε = damping·λ_max(A) (``relative``) or damping (``absolute``)."""
        A = self.A
        eps = damping * torch.linalg.eigvalsh(A)[-1] if mode == "relative" else damping
        M = torch.linalg.solve(A + eps * torch.eye(A.shape[0], dtype=A.dtype), self.J.T)
        c = 0.0 if bias is None else float((M @ bias).pow(2).sum())
        return float(torch.sqrt(c + noise_var * M.pow(2).sum()))


def dense(model: nn.Module, x: Tensor, y: Tensor, loss_fn=F.cross_entropy) -> Dense:
    g = flat_grad_fn(model, loss_fn)
    J = jacrev(g)(x, y).reshape(-1, x.numel())
    return Dense(J=J.detach(), g=g(x, y).detach())


def dense_stack(case: Case) -> list[Dense]:
    """:class:`Dense` for every sample of ``case``."""
    return [dense(case.model, x, y) for x, y in zip(case.X, case.Y)]


def compare_matmat(
    op: BatchedOperator,
    mat: Tensor,
    *,
    m: int = 3,
    rtol: float = 1e-9,
    atol: float = 1e-12,
    seed: int = 0,
) -> None:
    """Check a batched operator against its dense twin ``mat`` ``[B, d, d]``.

    ``op @ V`` for random ``V`` ``[B, m, d]`` and ``[B, d]``, and ``op.adjoint() @ V``,
    must equal the dense products; ``atol`` is relative to the largest entry of ``mat``.
    """
    B, d, _ = mat.shape
    assert op.shape == (B, d, d)
    gen = torch.Generator().manual_seed(seed)
    V = torch.randn(B, m, d, generator=gen, dtype=mat.dtype)
    want = torch.einsum("bij,bmj->bmi", mat, V)
    want_adjoint = torch.einsum("bji,bmj->bmi", mat, V)
    tol = dict(rtol=rtol, atol=atol * float(mat.abs().max()))
    torch.testing.assert_close(op @ V, want, **tol)
    torch.testing.assert_close(op @ V[:, 0], want[:, 0], **tol)
    torch.testing.assert_close(op.adjoint() @ V, want_adjoint, **tol)


def dense_batch(model: nn.Module, X: Tensor, Y: Tensor, loss_fn=F.cross_entropy) -> Dense:
    """:class:`Dense` of one batch: g = ∇_θ of the batch's mean loss, J = ∂g/∂X over all
    of ``X`` ``[B, ...]`` flattened (d = B·d₁)."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def g(Xb: Tensor) -> Tensor:
        def loss(p):
            return loss_fn(functional_call(model, (p, buffers), (Xb,)), Y)

        return torch.cat([t.reshape(-1) for t in grad(loss)(params).values()])

    J = jacrev(g)(X).reshape(-1, X.numel())
    return Dense(J=J.detach(), g=g(X).detach())
