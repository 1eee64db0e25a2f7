"""Batched matrix-free linear operators: one symmetric d × d operator per sample.

An operator is an object with ``@``: ``A @ V`` applies each sample's operator to that
sample's vectors, ``V`` being ``[B, m, d]`` (m vectors per sample) or ``[B, d]`` (one).
Operators compose the way matrices do — a scalar multiple, a damped operator
A + εI, the inverse of a damped operator by conjugate gradients — without ever
forming a d × d matrix. ``A.restrict(idx)`` is the operator of a subset of the samples,
so that iterative solvers pay only for the samples still iterating. (The interface
follows the linear operators of curvlinops, batched over samples.)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from torch import Tensor

from leakaudit.linalg.cg import CGResult, conjugate_gradient

Matmat = Callable[[Tensor], Tensor]


class BatchedOperator(ABC):
    """B symmetric d × d operators, applied matrix-free.

    Subclasses implement :meth:`_matmat` on ``[B, m, d]``; ``@`` also takes ``[B, d]``.

    Args:
        batch: B, the number of samples (operators).
        dim: d.
    """

    def __init__(self, batch: int, dim: int) -> None:
        self.batch, self.dim = batch, dim

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(B, d, d)``."""
        return self.batch, self.dim, self.dim

    @abstractmethod
    def _matmat(self, V: Tensor) -> Tensor:
        """Apply the operators to ``V`` ``[B, m, d]``; returns ``[B, m, d]``."""

    def __matmul__(self, V: Tensor) -> Tensor:
        if V.ndim == 2 and V.shape == (self.batch, self.dim):
            return self._matmat(V[:, None])[:, 0]
        if V.ndim != 3 or V.shape[0] != self.batch or V.shape[2] != self.dim:
            raise ValueError(f"cannot apply operators {self.shape} to {tuple(V.shape)}")
        return self._matmat(V)

    def __rmul__(self, scale: float) -> BatchedOperator:
        return ScaledOperator(self, scale)

    def adjoint(self) -> BatchedOperator:
        """Aᵀ: every operator here is symmetric, so A itself."""
        return self

    def restrict(self, idx: Tensor) -> BatchedOperator:
        """The operators of the samples ``idx`` (``[b]`` int64, ascending), batch b.

        This default applies all B operators to zero-padded vectors (correct, no saving);
        subclasses restrict their parts so that only the b samples are computed.
        """
        return _PaddedSubset(self, idx)


class _PaddedSubset(BatchedOperator):
    """A subset of an operator's samples, computed through the whole batch."""

    def __init__(self, operator: BatchedOperator, idx: Tensor) -> None:
        super().__init__(int(idx.numel()), operator.dim)
        self.operator, self.idx = operator, idx

    def _matmat(self, V: Tensor) -> Tensor:
        full = V.new_zeros(self.operator.batch, *V.shape[1:])
        full[self.idx] = V
        return (self.operator @ full)[self.idx]


class MatmatOperator(BatchedOperator):
    """An operator given by its product, e.g. a Gram matrix JᵀJ from Jacobian products.

    Args:
        matmat: ``[B, m, d] -> [B, m, d]``, symmetric per sample.
        batch: B.
        dim: d.
        subset: ``idx -> matmat`` of the samples ``idx`` (e.g. from the Jacobians'
            ``restrict``); without it :meth:`restrict` computes the whole batch.
    """

    def __init__(
        self, matmat: Matmat, batch: int, dim: int, subset: Callable[[Tensor], Matmat] | None = None
    ) -> None:
        super().__init__(batch, dim)
        self._product, self._subset = matmat, subset

    def _matmat(self, V: Tensor) -> Tensor:
        return self._product(V)

    def restrict(self, idx: Tensor) -> BatchedOperator:
        if self._subset is None:
            return super().restrict(idx)
        return MatmatOperator(self._subset(idx), int(idx.numel()), self.dim, self._subset_of(idx))

    def _subset_of(self, idx: Tensor) -> Callable[[Tensor], Matmat] | None:
        subset = self._subset
        assert subset is not None
        return lambda sub: subset(idx[sub])


class ScaledOperator(BatchedOperator):
    """c · A for a scalar c (``c * A``)."""

    def __init__(self, operator: BatchedOperator, scale: float) -> None:
        super().__init__(operator.batch, operator.dim)
        self.operator, self.scale = operator, scale

    def _matmat(self, V: Tensor) -> Tensor:
        return self.scale * (self.operator @ V)

    def restrict(self, idx: Tensor) -> BatchedOperator:
        return ScaledOperator(self.operator.restrict(idx), self.scale)


class DampedOperator(BatchedOperator):
    """A + εI with a damping ε per sample.

    Args:
        operator: A.
        damping: ε, ``[B]``.
    """

    def __init__(self, operator: BatchedOperator, damping: Tensor) -> None:
        super().__init__(operator.batch, operator.dim)
        self.operator, self.damping = operator, damping

    def _matmat(self, V: Tensor) -> Tensor:
        return self.operator @ V + self.damping[:, None, None] * V

    def restrict(self, idx: Tensor) -> BatchedOperator:
        return DampedOperator(self.operator.restrict(idx), self.damping[idx])


class CGInverseOperator(BatchedOperator):
    """A⁻¹ for symmetric positive definite A, applied by conjugate gradients.

    Each right-hand side is its own CG system and stops on its own tolerance, so a
    sample's result does not depend on the other samples of the batch.

    Args:
        operator: A (positive definite per sample, e.g. a :class:`DampedOperator`).
        tol: a system stops when ‖r‖ ≤ tol·‖rhs‖.
        max_iter: CG iterations at most.
    """

    def __init__(self, operator: BatchedOperator, *, tol: float, max_iter: int) -> None:
        super().__init__(operator.batch, operator.dim)
        self.operator, self.tol, self.max_iter = operator, tol, max_iter

    def solve(self, rhs: Tensor) -> CGResult:
        """Solve A s = rhs (``[B, d]`` or ``[B, m, d]``) with the convergence record."""
        return conjugate_gradient(self.operator, rhs, tol=self.tol, max_iter=self.max_iter)

    def _matmat(self, V: Tensor) -> Tensor:
        return self.solve(V).solution

    def restrict(self, idx: Tensor) -> BatchedOperator:
        sub = self.operator.restrict(idx)
        return CGInverseOperator(sub, tol=self.tol, max_iter=self.max_iter)
