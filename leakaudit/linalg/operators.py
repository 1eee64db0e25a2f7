"""Batched matrix-free linear operators: one symmetric d × d operator per sample.

An operator is an object with ``@``: ``A @ V`` applies each sample's operator to that
sample's vectors, ``V`` being ``[B, m, d]`` (m vectors per sample) or ``[B, d]`` (one).
Operators compose the way matrices do — a scalar multiple, a damped operator
A + εI, the inverse of a damped operator by conjugate gradients — without ever
forming a d × d matrix. (The interface follows the linear operators of curvlinops,
batched over samples.)
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


class MatmatOperator(BatchedOperator):
    """An operator given by its product, e.g. a Gram matrix JᵀJ from Jacobian products.

    Args:
        matmat: ``[B, m, d] -> [B, m, d]``, symmetric per sample.
        batch: B.
        dim: d.
    """

    def __init__(self, matmat: Matmat, batch: int, dim: int) -> None:
        super().__init__(batch, dim)
        self._product = matmat

    def _matmat(self, V: Tensor) -> Tensor:
        return self._product(V)


class ScaledOperator(BatchedOperator):
    """c · A for a scalar c (``c * A``)."""

    def __init__(self, operator: BatchedOperator, scale: float) -> None:
        super().__init__(operator.batch, operator.dim)
        self.operator, self.scale = operator, scale

    def _matmat(self, V: Tensor) -> Tensor:
        return self.scale * (self.operator @ V)


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
        return conjugate_gradient(
            self.operator.__matmul__, rhs, tol=self.tol, max_iter=self.max_iter
        )

    def _matmat(self, V: Tensor) -> Tensor:
        return self.solve(V).solution
