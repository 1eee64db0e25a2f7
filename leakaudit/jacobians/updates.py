"""The update a FedAvg client sends after E local steps, as a function of its data.

A client that runs E steps of gradient descent of learning rate η on its batch (x, y),

    θ_{k+1} = θ_k − η ∇_θ ℓ(f_{θ_k}(x), y),     k = 0, ..., E − 1,

sends Δθ = θ_E − θ_0 = −η Σ_k ∇_θ ℓ(f_{θ_k}(x), y). leakaudit scores the map
x ↦ u(x) = Σ_k ∇_θ ℓ(f_{θ_k}(x), y) = −Δθ/η in place of the gradient (E = 1 gives the
gradient itself, so the scores and σ keep the units of a gradient: noise σ on u is noise
η·σ on Δθ). θ_k depends on x for k ≥ 1, so J = ∂u/∂x carries the chain through the steps
(Geiping et al. 2020 invert such multi-step updates). The sum is accumulated directly,
not as (θ_0 − θ_E)/η, so float32 keeps its digits.

Cost: u takes E forward/backward passes, and every Jacobian product differentiates
through all E of them (the retained linearisation of :mod:`leakaudit.jacobians.func`),
with the memory of E steps' activations. Measured on the demo LeNet (8×8 digits, CPU, one
thread of a loaded 2-core machine): 0.56 ms per product for E = 1, 2.2 ms for E = 2,
3.0 ms for E = 4 (docs/federated.md).
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.func import grad

from leakaudit.jacobians.func import LossFn, SampleLoss


class LocalUpdate(SampleLoss):
    """``u(x, y)``: the flat sum of the E local steps' gradients, ``[P]`` (a
    :data:`FlatGrad`), also per parameter tensor (:meth:`parts`, which the retained
    linearisation differentiates).

    Args:
        model: the network; called through ``functional_call``.
        params: the received global parameters θ_0, name → tensor.
        buffers: buffers (BatchNorm statistics), name → tensor.
        loss_fn: ``loss(logits [1, C], y [1]) -> scalar``.
        steps: E ≥ 1.
        lr: η > 0.
    """

    def __init__(
        self,
        model: nn.Module,
        params: dict[str, Tensor],
        buffers: dict[str, Tensor],
        loss_fn: LossFn,
        steps: int,
        lr: float,
    ) -> None:
        super().__init__(model, params, buffers, loss_fn)
        self.steps, self.lr = steps, lr

    def parts(self, x: Tensor, y: Tensor) -> tuple[Tensor, ...]:
        """Σ_k ∇_θ ℓ(f_{θ_k}(x), y) per parameter tensor, in the order of ``params``."""
        names = tuple(self.params)
        p, total = self.params, None
        for _ in range(self.steps):
            g = grad(self._loss)(p, x, y)
            total = g if total is None else {n: total[n] + g[n] for n in names}
            p = {n: p[n] - self.lr * g[n] for n in names}
        assert total is not None
        return tuple(total[n] for n in names)


#: ``make_flat_update(model, params, buffers, loss_fn, steps, lr)``: the client's update
#: map as a :data:`FlatGrad` (:class:`LocalUpdate`).
make_flat_update = LocalUpdate
