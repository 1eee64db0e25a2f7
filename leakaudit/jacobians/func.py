"""Vectorised per-sample Jacobian products with torch.func.

A chunk's gradient map X ↦ (g(x_i, y_i))_i is linearised once and its graph retained
(:class:`_Linearised`): Jᵀ u is its pullback (reverse over reverse) and J v the pullback
of that pullback (the double-vjp trick), so a product walks the retained graph and never
redoes the samples' primal forward and backward passes. The samples of a chunk run
together under ``vmap``; several vectors per sample under an inner ``vmap``.

For a plain gradient g = ∇_θ ℓ (:class:`PlainGradient`), J = ∂²ℓ/∂θ∂x and mixed partials
commute, so J c = ∇_θ ⟨c, ∇_x ℓ⟩: ``jv_many`` forms many J·v that way (the dense path's
d basis vectors), one small graph per sample. Nothing here uses forward mode, whose first
use in a process costs torch a one-time ~0.4 s of TorchScript set-up.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vjp, vmap

from leakaudit.jacobians.protocol import ProductCount

LossFn = Callable[[Tensor, Tensor], Tensor]
FlatGrad = Callable[[Tensor, Tensor], Tensor]


class SampleLoss:
    """One sample's loss as a function of the parameters, ``loss(p, x, y)``, and a map
    derived from it: ``parts(x, y)`` per parameter tensor (subclasses), called flat as
    ``self(x, y)`` ``[P]`` (a :data:`FlatGrad`).

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

    def parts(self, x: Tensor, y: Tensor) -> tuple[Tensor, ...]:
        """The map per parameter tensor, in the order of ``params``."""
        raise NotImplementedError

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.cat([t.reshape(-1) for t in self.parts(x, y)])


class PlainGradient(SampleLoss):
    """``g(x, y)``: the flat parameter gradient of one sample's loss, ``[P]`` (a
    :data:`FlatGrad`), with its Jacobian's rows by reverse over reverse (:meth:`rows`).
    Arguments as for :class:`SampleLoss`."""

    def _flat(self, g: dict[str, Tensor]) -> Tensor:
        return torch.cat([g[n].reshape(-1) for n in self.params])

    def parts(self, x: Tensor, y: Tensor) -> tuple[Tensor, ...]:
        """The gradient per parameter tensor, in the order of the flat g."""
        g = grad(self._loss)(self.params, x, y)
        return tuple(g[n] for n in self.params)

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


class _Linearised:
    """The gradient map of the samples ``rows`` linearised once, its graph retained.

    Jᵀ is the pullback of X ↦ vmap(g)(X): rows never mix, so the pullback of a batch of
    cotangents is each sample's Jᵀu. J is the pullback of that pullback (linear in its
    cotangent, so the zero cotangent serves), the double-vjp trick. Every product then
    walks the retained graph instead of redoing the primal forward and backward passes.
    The graph holds g per parameter tensor (:meth:`PlainGradient.parts`): a flat g
    would make every J·v pull back through the concatenation, one zero-filled [b, P]
    buffer per tensor (measured: 40 % of a Gram product on the DLG LeNet).
    """

    def __init__(self, flat_grad: FlatGrad, X: Tensor, Y: Tensor, rows: Tensor) -> None:
        self.rows, self.size = rows, int(rows.numel())
        self._shape = X.shape
        parts = getattr(flat_grad, "parts", None)
        fn = parts if parts is not None else (lambda x, y: (flat_grad(x, y),))
        linear = vjp(lambda Z: vmap(fn)(Z, Y), X)
        out, self._pull = linear[0], linear[1]
        self._shapes = [o.shape[1:] for o in out]
        self._split = [int(o[0].numel()) for o in out]
        self.grads = torch.cat([o.reshape(self.size, -1) for o in out], dim=1).detach()
        zeros = tuple(torch.zeros_like(o) for o in out)
        self._push = vjp(lambda U: self._pull(U)[0], zeros)[1]

    def jt(self, U: Tensor) -> Tensor:
        """Jᵀ U: ``[b, P] -> [b, d]``."""
        parts = U.split(self._split, dim=1)
        cot = tuple(u.reshape(self.size, *s) for u, s in zip(parts, self._shapes))
        return self._pull(cot)[0].reshape(self.size, -1)

    def _jv(self, v: Tensor) -> Tensor:
        (parts,) = self._push(v.reshape(self._shape))
        return torch.cat([p.reshape(self.size, -1) for p in parts], dim=1)

    def jv(self, V: Tensor) -> Tensor:
        """J V: ``[b, m, d] -> [b, m, P]``."""
        if V.shape[1] == 1:
            return self._jv(V[:, 0])[:, None]
        return vmap(self._jv, in_dims=1, out_dims=1)(V)

    def jtm(self, U: Tensor) -> Tensor:
        """Jᵀ U for m cotangents per sample: ``[b, m, P] -> [b, m, d]``."""
        if U.shape[1] == 1:
            return self.jt(U[:, 0])[:, None]
        return vmap(self.jt, in_dims=1, out_dims=1)(U)

    def gram(self, V: Tensor) -> Tensor:
        """JᵀJ V: ``[b, m, d] -> [b, m, d]``."""
        return self.jtm(self.jv(V))


class _Graphs:
    """The linearisations a chunk's views share (:class:`FuncOperators`).

    Up to two graphs are retained: the whole chunk's, and one of a subset. A view whose
    samples lie in a retained graph computes through it, its vectors zero-padded to the
    graph's batch, while it holds at least :data:`REUSE_FRACTION` of that batch; a view
    with fewer samples gets a graph of its own, which replaces the subset's. (Building a
    graph costs about one Gram product; a padded product costs what the graph's whole
    batch costs.)
    """

    def __init__(self, flat_grad: FlatGrad, X: Tensor, Y: Tensor) -> None:
        self._g, self._X, self._Y = flat_grad, X, Y
        self._graphs: dict[bool, tuple[_Linearised, Tensor]] = {}  # whole chunk? -> graph

    def get(self, rows: Tensor) -> tuple[_Linearised, Tensor | None]:
        """The graph to use for the chunk's rows ``rows`` and their positions in its batch
        (``None``: the graph's batch is exactly ``rows``)."""
        for graph, where in self._graphs.values():
            if graph.size == rows.numel() and bool((graph.rows == rows).all()):
                return graph, None
            pos = where[rows]
            if rows.numel() >= REUSE_FRACTION * graph.size and bool((pos >= 0).all()):
                return graph, pos
        graph = _Linearised(self._g, self._X[rows], self._Y[rows], rows)
        where = torch.full((self._X.shape[0],), -1, dtype=torch.int64, device=rows.device)
        where[rows] = torch.arange(rows.numel(), device=rows.device)
        self._graphs[graph.size == self._X.shape[0]] = (graph, where)
        return graph, None


#: A subset keeps computing through a retained graph while it holds at least this
#: fraction of the graph's samples (see :class:`_Graphs`).
REUSE_FRACTION = 0.5


def _padded(fn: Callable[[Tensor], Tensor], T: Tensor, pos: Tensor | None, size: int) -> Tensor:
    """``fn`` applied to the rows ``T`` placed at ``pos`` of a zero batch of ``size``."""
    if pos is None:
        return fn(T)
    full = T.new_zeros(size, *T.shape[1:])
    full[pos] = T
    return fn(full)[pos]


class FuncOperators:
    """:class:`~leakaudit.jacobians.protocol.SampleOperators` via torch.func.

    J·v and Jᵀ·u walk one retained linearisation of the chunk (:class:`_Linearised`),
    built on the first product and shared by the restricted views.

    Args:
        flat_grad: from :func:`make_flat_grad`.
        X: inputs ``[B, *input_shape]``.
        Y: labels ``[B]``.
        linearise: build the chunk's linearisation now and read the gradients off it
            (when products will follow: it saves the separate gradient pass).
    """

    def __init__(
        self,
        flat_grad: FlatGrad,
        X: Tensor,
        Y: Tensor,
        *,
        linearise: bool = False,
        _view: tuple[Tensor, ProductCount, _Graphs, Tensor] | None = None,
    ) -> None:
        self._g = flat_grad
        self._X = X
        self._Y = Y
        self.dim = int(X[0].numel())
        if _view is None:
            self._count = ProductCount()
            self._graphs = _Graphs(flat_grad, X, Y)
            self._rows = torch.arange(X.shape[0], device=X.device)
            self.grads: Tensor = (
                self._graphs.get(self._rows)[0].grads if linearise else vmap(flat_grad)(X, Y)
            )
        else:  # a restricted view (see restrict): gradients and tally come from the parent
            self.grads, self._count, self._graphs, self._rows = _view

    @property
    def products(self) -> ProductCount:
        """Single-sample J·v / Jᵀ·u products performed so far and their time (views included)."""
        return self._count

    def restrict(self, idx: Tensor) -> FuncOperators:
        """The operators of the samples ``idx``; shares the gradients' rows, the tally and
        the retained linearisation."""
        view = (self.grads[idx], self._count, self._graphs, self._rows[idx])
        return FuncOperators(self._g, self._X[idx], self._Y[idx], _view=view)

    def _through(self, name: str, T: Tensor) -> Tensor:
        graph, pos = self._graphs.get(self._rows)
        return _padded(getattr(graph, name), T, pos, graph.size)

    def gram(self, V: Tensor) -> Tensor:
        with self._count.add(V.shape[0], V.shape[1], 2):
            return self._through("gram", V)

    def jt(self, U: Tensor) -> Tensor:
        with self._count.add(U.shape[0]):
            return self._through("jt", U)

    def jv(self, V: Tensor) -> Tensor:
        """J V for ``V`` ``[B, m, d]``: ``[B, m, P]``."""
        with self._count.add(V.shape[0], V.shape[1]):
            return self._through("jv", V)

    def jv_many(self, V: Tensor) -> Tensor:
        """J V for ``V`` ``[B, m, d]`` with many vectors per sample: ``[B, m, P]``, by
        reverse over reverse for a :class:`PlainGradient` (module docstring), else :meth:`jv`."""
        if not isinstance(self._g, PlainGradient):
            return self.jv(V)
        with self._count.add(V.shape[0], V.shape[1]):
            return vmap(self._g.rows)(self._X, self._Y, V)

    def jnorm2(self, V: Tensor) -> Tensor:
        with self._count.add(V.shape[0], V.shape[1]):
            return self._through("jv", V).pow(2).sum(-1)
