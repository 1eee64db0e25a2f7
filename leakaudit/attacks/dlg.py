"""Deep Leakage from Gradients (Zhu, Liu & Han, NeurIPS 2019).

The attacker starts from random inputs and random label logits and minimises the L2
distance between the candidates' gradients and the observed one, optimising inputs
and labels jointly with L-BFGS. The label enters the loss as the soft target
softmax(label logits).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from leakaudit.attacks.base import (
    AttackResult,
    AttackTarget,
    Budget,
    Progress,
    check_budget,
    config_dict,
    random_start,
)
from leakaudit.attacks.lbfgs import lbfgs_minimize
from leakaudit.attacks.objective import l2_distance, make_per_sample_grads

#: L-BFGS iterations per budget. The reference calls ``torch.optim.LBFGS.step`` 300
#: times, each running up to 20 iterations: at most 6000.
DLG_ITERATIONS: dict[str, int] = {"fast": 60, "standard": 300, "paper": 6000}


@dataclass(frozen=True)
class DLGConfig:
    """DLG hyperparameters (defaults: Zhu et al. 2019 reference code).

    Attributes:
        iterations: L-BFGS iterations at most.
        lr: L-BFGS step length (reference: 1).
        history: L-BFGS curvature pairs kept (torch default: 100).
        line_search: per-sample Armijo backtracking (not in the reference, which can
            diverge; it only rejects steps that increase the loss).
    """

    iterations: int = DLG_ITERATIONS["standard"]
    lr: float = 1.0
    history: int = 100
    line_search: bool = True

    @classmethod
    def for_budget(cls, budget: Budget) -> DLGConfig:
        """The defaults with the iteration count of ``budget``."""
        return cls(iterations=DLG_ITERATIONS[check_budget(budget)])


def l2_matching_attack(
    name: str,
    target: AttackTarget,
    labels: Tensor | None,
    config: DLGConfig,
    progress: Progress | None = None,
) -> AttackResult:
    """L2 gradient matching with L-BFGS; labels optimised jointly when ``labels`` is None.

    Args:
        name: attack name for the result.
        target: the model and the ``[B, P]`` observed gradients (``space`` is unused).
        labels: ``[B]`` fixed labels, or ``None`` to optimise soft labels (DLG).
        config: optimiser settings.
        progress: ``progress(done, total)`` per iteration.

    Returns:
        The reconstructions in model space.
    """
    observed, input_shape, num_classes = target.observed, target.input_shape, target.num_classes
    b = target.batch_size
    d = 1
    for s in input_shape:
        d *= s
    generator = target.generator()
    per_sample = make_per_sample_grads(target.model)
    x0 = random_start((b, d), generator, observed)
    joint = labels is None
    if joint:
        x0 = torch.cat([x0, random_start((b, num_classes), generator, observed)], dim=1)
    else:
        assert labels is not None
        fixed = torch.nn.functional.one_hot(labels.long(), num_classes).to(observed)

    def soft_labels(v: Tensor) -> Tensor:
        return torch.softmax(v[:, d:], dim=-1) if joint else fixed

    def objective(v: Tensor) -> Tensor:
        inputs = v[:, :d].reshape(b, *input_shape)
        return l2_distance(per_sample(inputs, soft_labels(v)), observed)

    res = lbfgs_minimize(
        objective,
        x0,
        iterations=config.iterations,
        lr=config.lr,
        history=config.history,
        line_search=config.line_search,
        progress=progress,
    )
    used = soft_labels(res.x).argmax(dim=-1) if joint else labels
    assert used is not None
    return AttackResult(
        attack=name,
        reconstruction=res.x[:, :d].reshape(b, *input_shape).detach(),
        labels=used.detach().long(),
        matching_loss=res.loss.detach(),
        iterations=res.iterations,
        config=config_dict(config),
    )


def dlg_attack(
    target: AttackTarget, config: DLGConfig | None = None, progress: Progress | None = None
) -> AttackResult:
    """Run DLG on each row of ``target.observed`` ``[B, P]`` (unboxed: ``space`` is unused).

    Returns:
        Reconstructions ``[B, *input_shape]`` and the argmax of the optimised labels.
    """
    return l2_matching_attack("dlg", target, None, config or DLGConfig(), progress)
