"""Deep Leakage from Gradients (Zhu, Liu & Han, NeurIPS 2019).

The attacker starts from random inputs and random label logits and minimises the L2
distance between the candidates' gradients and the observed one, optimising inputs
and labels jointly with L-BFGS. The label enters the loss as the soft target
softmax(label logits).
"""

from __future__ import annotations

import math
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
from leakaudit.attacks.objective import batch_mean, l2_distance, make_per_sample_grads

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

    A problem's variables are its ``group`` candidate inputs (and label logits), so a
    batch's candidates are optimised jointly against its one gradient, and problems stay
    independent (:mod:`leakaudit.attacks.lbfgs`).

    Args:
        name: attack name for the result.
        target: the model and the ``[G, P]`` observed gradients (``space`` is unused).
        labels: ``[G·group]`` fixed labels, or ``None`` to optimise soft labels (DLG).
        config: optimiser settings.
        progress: ``progress(done, total)`` per iteration.

    Returns:
        The reconstructions in model space.
    """
    observed, input_shape, num_classes = target.observed, target.input_shape, target.num_classes
    n, k, d = target.n_inputs, target.group, math.prod(input_shape)
    per_sample = make_per_sample_grads(target.model)
    joint = labels is None
    x0 = _start(target, d, joint)
    if labels is not None:
        fixed = torch.nn.functional.one_hot(labels.long(), num_classes).to(observed)
    width = x0.shape[1]

    def soft_labels(v: Tensor) -> Tensor:
        return torch.softmax(v[:, d:], dim=-1) if joint else fixed

    def objective(rows: Tensor) -> Tensor:
        v = rows.reshape(n, width)
        inputs = v[:, :d].reshape(n, *input_shape)
        return l2_distance(batch_mean(per_sample(inputs, soft_labels(v)), k), observed)

    res = lbfgs_minimize(
        objective,
        x0.reshape(target.batch_size, k * width),
        iterations=config.iterations,
        lr=config.lr,
        history=config.history,
        line_search=config.line_search,
        progress=progress,
    )
    v = res.x.reshape(n, width)
    used = soft_labels(v).argmax(dim=-1) if joint else labels
    assert used is not None
    return AttackResult(
        attack=name,
        reconstruction=v[:, :d].reshape(n, *input_shape).detach(),
        labels=used.detach().long(),
        matching_loss=res.loss.detach().repeat_interleave(k),
        iterations=res.iterations,
        config=config_dict(config),
    )


def _start(target: AttackTarget, d: int, joint: bool) -> Tensor:
    """Each input's random start ``[n, d]``, its label logits' appended when ``joint``."""
    generator, n = target.generator(), target.n_inputs
    x0 = random_start((n, d), generator, target.observed)
    if not joint:
        return x0
    logits = random_start((n, target.num_classes), generator, target.observed)
    return torch.cat([x0, logits], dim=1)


def dlg_attack(
    target: AttackTarget, config: DLGConfig | None = None, progress: Progress | None = None
) -> AttackResult:
    """Run DLG on each row of ``target.observed`` ``[G, P]`` (unboxed: ``space`` is unused).

    Returns:
        Reconstructions ``[G·group, *input_shape]`` and the argmax of the optimised labels.
    """
    return l2_matching_attack("dlg", target, None, config or DLGConfig(), progress)
