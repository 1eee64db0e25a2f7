"""Vectorised per-sample Jacobian products with torch.func.

J v is forward-over-reverse (``jvp`` of ``grad``), Jᵀ u is reverse-over-reverse
(``vjp`` of ``grad``). The inner ``vmap`` runs over the m vectors of one sample so the
sample's primal forward/backward pass is computed once per product; the outer ``vmap``
runs over the samples of a chunk.

For a plain gradient g = ∇_θ ℓ (:class:`PlainGradient`), J = ∂²ℓ/∂θ∂x and mixed partials
commute, so J c = ∇_θ ⟨c, ∇_x ℓ⟩ is also reverse-over-reverse: ``jv_many`` forms many
J·v that way (the dense path's d basis vectors). It needs no forward mode, whose first
use in a process costs torch a one-time ~0.4 s of TorchScript set-up.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from leakaudit.jacobians.protocol import ProductCount

LossFn = Callable[[Tensor, Tensor], Tensor]
FlatGrad = Callable[[Tensor, Tensor], Tensor]


class PlainGradient:
    """``g(x, y)``: the flat parameter gradient of one sample's loss, ``[P]`` (a
    :data:`FlatGrad`), with its Jacobian's rows by reverse over reverse (:meth:`rows`).

    Args:
        model: the network; called through ``functional_call`` with ``params``.
        params: parameters to differentiate, name → tensor.
        buffers: buffers (BatchNorm statistics), name → tensor.
        loss_fn: ``loss(logits [1, C], y [1]) -> scalar``.
    """

    def __init__(
        self,
        model: nn.Module,
        params: dict[str, Tensor],
        buffers: dict[str, Tensor],
        loss_fn: LossFn,
    ) -> None:
        self.model, self.params, self.buffers, self.loss_fn = model, params, buffers, loss_fn

    def _loss(self, p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        out = functional_call(self.model, (p, self.buffers), (x.unsqueeze(0),))
        return self.loss_fn(out, y.unsqueeze(0))

    def _flat(self, g: dict[str, Tensor]) -> Tensor:
        return torch.cat([g[n].reshape(-1) for n in self.params])

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        return self._flat(grad(self._loss)(self.params, x, y))

    def rows(self, x: Tensor, y: Tensor, C: Tensor) -> Tensor:
        """J c = ∇_θ ⟨c, ∇_x ℓ⟩ for the m vectors ``C`` ``[m, d]`` of one sample: ``[m, P]``
        (one double backward, then a vjp per vector)."""
        input_grad = grad(self._loss, argnums=1)
        pullback = vjp(lambda p: input_grad(p, x, y), self.params)[1]
        return vmap(lambda c: self._flat(pullback(c.reshape(x.shape))[0]))(C)


def make_flat_grad(
    model: nn.Module, params: dict[str, Tensor], buffers: dict[str, Tensor], loss_fn: LossFn
) -> FlatGrad:
    """Return ``g(x, y)``: the flat parameter gradient of one sample's loss, ``[P]``, as a
    :class:`PlainGradient` (arguments as there)."""
    return PlainGradient(model, params, buffers, loss_fn)


class FuncOperators:
    """:class:`~leakaudit.jacobians.protocol.SampleOperators` via torch.func.

    Args:
        flat_grad: from :func:`make_flat_grad`.
        X: inputs ``[B, *input_shape]``.
        Y: labels ``[B]``.
    """

    def __init__(
        self,
        flat_grad: FlatGrad,
        X: Tensor,
        Y: Tensor,
        *,
        _view: tuple[Tensor, ProductCount] | None = None,
    ) -> None:
        self._g = flat_grad
        self._X = X
        self._Y = Y
        self._shape = X.shape[1:]
        self.dim = int(X[0].numel())
        if _view is None:
            self.grads: Tensor = vmap(flat_grad)(X, Y)
            self._count = ProductCount()
        else:  # a restricted view (see restrict): gradients and tally come from the parent
            self.grads, self._count = _view

    @property
    def products(self) -> ProductCount:
        """Single-sample J·v / Jᵀ·u products performed so far and their time (views included)."""
        return self._count

    def restrict(self, idx: Tensor) -> FuncOperators:
        """The operators of the samples ``idx``; shares the gradients' rows and the tally."""
        view = (self.grads[idx], self._count)
        return FuncOperators(self._g, self._X[idx], self._Y[idx], _view=view)

    def _jv_one(self, x: Tensor, y: Tensor, V: Tensor) -> Tensor:
        shape = self._shape

        def g_of_x(xx: Tensor) -> Tensor:
            return self._g(xx, y)

        def jv(v: Tensor) -> Tensor:
            return jvp(g_of_x, (x,), (v.reshape(shape),))[1]

        return vmap(jv)(V)

    def gram(self, V: Tensor) -> Tensor:
        def one(x: Tensor, y: Tensor, Vs: Tensor) -> Tensor:
            JV = self._jv_one(x, y, Vs)
            pullback = vjp(lambda xx: self._g(xx, y), x)[1]
            out = vmap(lambda u: pullback(u)[0])(JV)
            return out.reshape(Vs.shape)

        with self._count.add(V.shape[0], V.shape[1], 2):
            return vmap(one)(self._X, self._Y, V)

    def jt(self, U: Tensor) -> Tensor:
        def one(x: Tensor, y: Tensor, u: Tensor) -> Tensor:
            pullback = vjp(lambda xx: self._g(xx, y), x)[1]
            return pullback(u)[0].reshape(-1)

        with self._count.add(U.shape[0]):
            return vmap(one)(self._X, self._Y, U)

    def jv(self, V: Tensor) -> Tensor:
        """J V for ``V`` ``[B, m, d]``: ``[B, m, P]``."""
        with self._count.add(V.shape[0], V.shape[1]):
            return vmap(self._jv_one)(self._X, self._Y, V)

    def jv_many(self, V: Tensor) -> Tensor:
        """J V for ``V`` ``[B, m, d]`` with many vectors per sample: ``[B, m, P]``, by
        reverse over reverse for a :class:`PlainGradient` (module docstring), else :meth:`jv`."""
        if not isinstance(self._g, PlainGradient):
            return self.jv(V)
        with self._count.add(V.shape[0], V.shape[1]):
            return vmap(self._g.rows)(self._X, self._Y, V)

    def jnorm2(self, V: Tensor) -> Tensor:
        def one(x: Tensor, y: Tensor, Vs: Tensor) -> Tensor:
            return self._jv_one(x, y, Vs).pow(2).sum(-1)

        with self._count.add(V.shape[0], V.shape[1]):
            return vmap(one)(self._X, self._Y, V)
