"""Per-sample Jacobian products by plain autograd double backward, one sample at a time.

The fallback for models torch.func cannot transform (custom autograd Functions
without vmap support, in-place ops in hooks, TorchScript). Each sample keeps its
graph for the whole Lanczos run:

* g = ∇_θ ℓ with ``create_graph=True``;
* Jᵀu = ∂⟨g, u⟩/∂x (double backward);
* J v by the double-vjp trick: h(w) = Jᵀw is linear in a dummy w, so J v = ∂⟨h(w), v⟩/∂w.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from leakaudit.jacobians.protocol import ProductCount

LossFn = Callable[[Tensor, Tensor], Tensor]


class _SampleGraph:
    def __init__(
        self,
        forward: Callable[[Tensor], Tensor],
        params: list[Tensor],
        x: Tensor,
        y: Tensor,
        loss_fn: LossFn,
    ) -> None:
        self.x = x.detach().clone().requires_grad_(True)
        loss = loss_fn(forward(self.x.unsqueeze(0)), y.unsqueeze(0))
        gs = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        self.g = torch.cat(
            [
                (gi if gi is not None else torch.zeros_like(p)).reshape(-1)
                for gi, p in zip(gs, params)
            ]
        )
        self.w = torch.zeros_like(self.g, requires_grad=True)
        (self.h,) = torch.autograd.grad(self.g, self.x, self.w, create_graph=True)

    def jt(self, u: Tensor) -> Tensor:
        (out,) = torch.autograd.grad(self.g, self.x, u, retain_graph=True)
        return out.reshape(-1)

    def jv(self, v: Tensor) -> Tensor:
        (out,) = torch.autograd.grad(self.h, self.w, v.reshape(self.x.shape), retain_graph=True)
        return out


class AutogradOperators:
    """:class:`~leakaudit.jacobians.protocol.SampleOperators` by per-sample double backward.

    Args:
        forward: ``inputs [1, ...] -> logits``, differentiable in ``params``.
        params: the parameter tensors (``requires_grad=True``) in the order of the flat g.
        X: inputs ``[B, *input_shape]``.
        Y: labels ``[B]``.
        loss_fn: ``loss(logits [1, C], y [1]) -> scalar``.
    """

    def __init__(
        self,
        forward: Callable[[Tensor], Tensor],
        params: list[Tensor],
        X: Tensor,
        Y: Tensor,
        loss_fn: LossFn,
    ) -> None:
        with torch.enable_grad():
            self._samples = [_SampleGraph(forward, params, x, y, loss_fn) for x, y in zip(X, Y)]
        self.grads: Tensor = torch.stack([s.g.detach() for s in self._samples])
        self.dim = int(X[0].numel())
        self._count = ProductCount()

    @property
    def products(self) -> ProductCount:
        """Single-sample J·v / Jᵀ·u products performed so far and their time (views included)."""
        return self._count

    def restrict(self, idx: Tensor) -> AutogradOperators:
        """The operators of the samples ``idx``, sharing their graphs and the tally."""
        view = object.__new__(AutogradOperators)
        view._samples = [self._samples[i] for i in idx.tolist()]
        view.grads, view.dim, view._count = self.grads[idx], self.dim, self._count
        return view

    def gram(self, V: Tensor) -> Tensor:
        with self._count.add(V.shape[0], V.shape[1], 2), torch.enable_grad():
            return torch.stack(
                [torch.stack([s.jt(s.jv(v)) for v in Vs]) for s, Vs in zip(self._samples, V)]
            )

    def jt(self, U: Tensor) -> Tensor:
        with self._count.add(U.shape[0]), torch.enable_grad():
            return torch.stack([s.jt(u) for s, u in zip(self._samples, U)])

    def jv(self, V: Tensor) -> Tensor:
        """J V for ``V`` ``[B, m, d]``: ``[B, m, P]``."""
        with self._count.add(V.shape[0], V.shape[1]), torch.enable_grad():
            return torch.stack(
                [torch.stack([s.jv(v).detach() for v in Vs]) for s, Vs in zip(self._samples, V)]
            )

    def jv_many(self, V: Tensor) -> Tensor:
        """J V for many vectors per sample: :meth:`jv`."""
        return self.jv(V)

    def jnorm2(self, V: Tensor) -> Tensor:
        with self._count.add(V.shape[0], V.shape[1]), torch.enable_grad():
            return torch.stack(
                [torch.stack([s.jv(v).pow(2).sum() for v in Vs]) for s, Vs in zip(self._samples, V)]
            )


def module_forward(
    model: nn.Module, params: dict[str, Tensor], buffers: dict[str, Tensor]
) -> Callable[[Tensor], Tensor]:
    """``inputs -> logits`` with ``params``/``buffers`` substituted into ``model``.

    TorchScript modules cannot be reparametrised; for them the module's own parameters
    are used (the caller makes them require grad and sets dtype/device).
    """
    if isinstance(model, torch.jit.ScriptModule):
        return model
    from torch.func import functional_call

    def forward(x: Tensor) -> Tensor:
        return functional_call(model, (params, buffers), (x,))

    return forward
