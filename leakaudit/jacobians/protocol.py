"""Per-sample Jacobian products of the gradient map x ↦ g(x) = ∇_θ ℓ(f_θ(x), y).

J = ∂g/∂x is P × d for each sample (SPEC.md). It is never formed: a
:class:`SampleOperators` gives, for a chunk of B samples at once,

* ``grads``      the flat per-sample gradients g(x*), ``[B, P]``;
* ``gram(V)``    JᵀJ V for m vectors per sample, ``[B, m, d] → [B, m, d]``;
* ``jt(U)``      Jᵀ U, ``[B, P] → [B, d]``;
* ``jv(V)``      J V for m vectors per sample, ``[B, m, d] → [B, m, P]``;
* ``jv_many(V)`` the same, computed the cheapest exact way for many vectors (m ≈ d);
* ``jnorm2(V)``  ‖J v‖² for m vectors per sample, ``[B, m, d] → [B, m]``;
* ``dim``        d;
* ``products``   how many single-sample products (one J·v or one Jᵀ·u each) were
  performed so far — a machine-independent cost (a Gram product JᵀJ v counts 2);
* ``restrict(idx)`` the same operators on a subset of the samples (sharing the tally),
  so a solver can skip the samples that are done.

Vectors in input space are flattened to length d = prod(input shape).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from torch import Tensor


class ProductCount:
    """A tally of single-sample Jacobian products, shared by restricted views.

    Attributes:
        n: products performed (one J·v or one Jᵀ·u each).
        seconds: wall time spent in the batched product calls (host time: on a GPU the
            kernels may still be running when a call returns).
    """

    def __init__(self) -> None:
        self.n = 0
        self.seconds = 0.0

    @contextmanager
    def add(self, samples: int, vectors: int = 1, per_vector: int = 1) -> Iterator[None]:
        """Count ``samples × vectors × per_vector`` products and time the block."""
        self.n += samples * vectors * per_vector
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start


class SampleOperators(Protocol):
    """Matrix-free products with the per-sample Jacobians of a chunk."""

    grads: Tensor
    dim: int

    def gram(self, V: Tensor) -> Tensor:
        """JᵀJ V: ``V`` is ``[B, m, d]``; returns ``[B, m, d]``."""
        ...

    def jt(self, U: Tensor) -> Tensor:
        """Jᵀ U: ``U`` is ``[B, P]``; returns ``[B, d]``."""
        ...

    def jv(self, V: Tensor) -> Tensor:
        """J V: ``V`` is ``[B, m, d]``; returns ``[B, m, P]``."""
        ...

    def jv_many(self, V: Tensor) -> Tensor:
        """J V for many vectors per sample (the dense path's basis): as :meth:`jv`."""
        ...

    def jnorm2(self, V: Tensor) -> Tensor:
        """‖J v‖² per vector: ``V`` is ``[B, m, d]``; returns ``[B, m]``."""
        ...

    @property
    def products(self) -> ProductCount:
        """The single-sample J·v and Jᵀ·u products performed so far and their time
        (restricted views included)."""
        ...

    def restrict(self, idx: Tensor) -> SampleOperators:
        """The operators of the samples ``idx`` (``[b]`` int64), sharing this tally."""
        ...
