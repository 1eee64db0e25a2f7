"""Deep Leakage from Gradients (Zhu, Liu & Han, NeurIPS 2019).

The attacker starts from random inputs and random label logits and minimises the L2
distance between the candidates' gradients and the observed one, optimising inputs
and labels jointly with L-BFGS. The label enters the loss as the soft target
softmax(label logits).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from leakaudit.attacks.base import (
    AttackResult,
    Budget,
    Progress,
    check_budget,
    config_dict,
    random_start,
)
from leakaudit.attacks.lbfgs import lbfgs_minimize
from leakaudit.attacks.objective import l2_distance, make_per_sample_grads
from leakaudit.attacks.space import InputSpace

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
    model: nn.Module,
    observed: Tensor,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    labels: Tensor | None,
    config: DLGConfig,
    generator: torch.Generator,
    progress: Progress | None = None,
) -> AttackResult:
    """L2 gradient matching with L-BFGS; labels optimised jointly when ``labels`` is None.

    Args:
        name: attack name for the result.
        model: the client's model (in the mode the client trains with).
        observed: ``[B, P]`` gradients the server received.
        input_shape: shape of one input, e.g. ``(C, H, W)``.
        num_classes: C.
        labels: ``[B]`` fixed labels, or ``None`` to optimise soft labels (DLG).
        config: optimiser settings.
        generator: CPU generator for the random start.
        progress: ``progress(done, total)`` per iteration.

    Returns:
        The reconstructions in model space.
    """
    b = observed.shape[0]
    d = 1
    for s in input_shape:
        d *= s
    per_sample = make_per_sample_grads(model)
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
    model: nn.Module,
    observed: Tensor,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    space: InputSpace,
    config: DLGConfig | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> AttackResult:
    """Run DLG on each row of ``observed`` ``[B, P]`` (``space`` is unused: DLG is unboxed).

    Returns:
        Reconstructions ``[B, *input_shape]`` and the argmax of the optimised labels.
    """
    del space
    return l2_matching_attack(
        "dlg",
        model,
        observed,
        input_shape=input_shape,
        num_classes=num_classes,
        labels=None,
        config=config or DLGConfig(),
        generator=torch.Generator().manual_seed(seed),
        progress=progress,
    )
