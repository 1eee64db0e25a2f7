"""Inverting Gradients (Geiping, Bauermeister, Dröge & Moeller, NeurIPS 2020).

The attacker minimises 1 − cos(g(x̂), g*) + α·TV(x̂) with Adam on the *sign* of the
gradient, projects x̂ onto the valid pixel box after every step, decays the step size
by 10× at 3/8, 5/8 and 7/8 of the iterations, and keeps, per sample, the restart with
the lowest final matching loss (cosine term only). All restarts of all samples run as
one batch of independent problems: Adam acts element-wise, so the batch does not
couple them. A problem may be a client batch: its candidates are matched jointly
against the gradient of their mean loss (:func:`~leakaudit.attacks.objective.batch_mean`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
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
from leakaudit.attacks.idlg import infer_labels
from leakaudit.attacks.objective import (
    batch_mean,
    cosine_distance,
    make_per_sample_grads,
    total_variation,
)

#: (iterations, restarts) per budget; "paper" is the reference configuration's 4800
#: iterations and 1 restart (raise ``restarts`` for a stronger, costlier attack).
IG_BUDGETS: dict[str, tuple[int, int]] = {
    "fast": (200, 1),
    "standard": (1000, 1),
    "paper": (4800, 1),
}


@dataclass(frozen=True)
class IGConfig:
    """Inverting Gradients hyperparameters (defaults: Geiping et al. 2020 reference).

    Attributes:
        iterations: Adam steps per restart (reference: 4800).
        restarts: independent random starts per sample; the lowest matching loss wins.
        lr: Adam step size (reference: 0.1).
        tv: total-variation weight α (reference CIFAR-10 setting: 1e-4).
        signed: step on sign(∇) instead of ∇ (reference: True).
        boxed: clamp to the valid pixel box after each step (reference: True).
        decay: fractions of the iterations at which the step size is multiplied by 0.1.
        labels: ``"known"`` uses the true labels (the paper's threat model);
            ``"infer"`` reads them off the gradient as iDLG does.
    """

    iterations: int = IG_BUDGETS["standard"][0]
    restarts: int = IG_BUDGETS["standard"][1]
    lr: float = 0.1
    tv: float = 1e-4
    signed: bool = True
    boxed: bool = True
    decay: tuple[float, ...] = (3 / 8, 5 / 8, 7 / 8)
    labels: Literal["known", "infer"] = "known"

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.restarts < 1:
            raise ValueError("IG iterations and restarts must be >= 1")
        if self.labels not in ("known", "infer"):
            raise ValueError("IG labels must be 'known' or 'infer'")

    @classmethod
    def for_budget(cls, budget: Budget) -> IGConfig:
        """The defaults with the iterations and restarts of ``budget``."""
        iterations, restarts = IG_BUDGETS[check_budget(budget)]
        return cls(iterations=iterations, restarts=restarts)


def ig_attack(
    target: AttackTarget, config: IGConfig | None = None, progress: Progress | None = None
) -> AttackResult:
    """Run Inverting Gradients on each row of ``target.observed`` ``[G, P]``.

    A batch's ``group`` candidates are matched jointly against its one gradient (TV: their
    mean).

    Args:
        target: the model, the observed gradients, the input space whose box the
            candidates are clamped to, and the ``[G·group]`` labels (required when
            ``config.labels == "known"``).
        config: hyperparameters.
        progress: ``progress(done, total)`` per Adam step (all restarts run together).

    Returns:
        The best restart per problem, in model space."""
    cfg = config or IGConfig()
    space, k, r = target.space, target.group, cfg.restarts
    used = _labels(target, cfg)
    goal = target.observed.repeat(r, 1)  # [R·G, P]: every restart matches its gradient
    onehot = F.one_hot(used.repeat(r), target.num_classes).to(target.observed)
    per_sample = make_per_sample_grads(target.model)

    def matching(x: Tensor) -> Tensor:
        return cosine_distance(batch_mean(per_sample(x, onehot), k), goal)

    x = random_start((r * target.n_inputs, *target.input_shape), target.generator(), goal)
    if cfg.boxed:
        x = space.clamp(x)
    x.requires_grad_(True)
    opt = torch.optim.Adam([x], lr=cfg.lr)
    milestones = [int(f * cfg.iterations) for f in cfg.decay]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)

    for it in range(cfg.iterations):
        opt.zero_grad(set_to_none=True)
        with torch.enable_grad():
            tv = batch_mean(total_variation(x)[:, None], k)[:, 0]
            (grad,) = torch.autograd.grad((matching(x) + cfg.tv * tv).sum(), x)
        x.grad = grad.sign() if cfg.signed else grad
        opt.step()
        sched.step()
        if cfg.boxed:
            with torch.no_grad():
                x.copy_(space.clamp(x))
        if progress is not None:
            progress(it + 1, cfg.iterations)

    with torch.no_grad():
        final = matching(x)
    rec, loss = _best_restart(x.detach(), final, r, k)
    return AttackResult(
        attack="ig",
        reconstruction=rec,
        labels=used,
        matching_loss=loss,
        iterations=cfg.iterations,
        config=config_dict(cfg),
    )


def _labels(target: AttackTarget, cfg: IGConfig) -> Tensor:
    """The ``[G·group]`` labels IG matches with: the given ones, or those iDLG reads off
    (one sample per gradient only).

    Raises:
        ValueError: ``"known"`` without labels, or ``"infer"`` on batches.
    """
    if cfg.labels == "infer":
        if target.group > 1:
            raise ValueError("IG labels='infer' reads one label per gradient: not on batches")
        return infer_labels(target.model, target.observed, target.num_classes)
    if target.labels is None:
        raise ValueError("IG with labels='known' needs the true labels")
    return target.labels.to(target.observed.device).long()


def _best_restart(
    x: Tensor, loss: Tensor, restarts: int, group: int = 1
) -> tuple[Tensor, Tensor]:
    """Per problem, the restart with the lowest matching loss.

    Args:
        x: ``[R·G·group, ...]`` final candidates, restart-major, then problem by problem.
        loss: ``[R·G]`` the problems' matching losses.
        restarts: R.
        group: inputs per problem.

    Returns:
        The ``[G·group, ...]`` best candidates and their problems' ``[G·group]`` losses.
    """
    g = loss.shape[0] // restarts
    by_restart = loss.view(restarts, g)
    best = by_restart.argmin(dim=0)
    cols = torch.arange(g, device=x.device)
    picked = x.view(restarts, g, group, *x.shape[1:])[best, cols]
    return picked.flatten(0, 1), by_restart[best, cols].repeat_interleave(group)
