"""Gradient inversion attacks: DLG, iDLG and Inverting Gradients, by name.

Each attack solves independent problems, one per row of the observed (possibly
defended) gradients ``[G, P]``: a row is one sample's gradient, or the gradient of a
client batch's mean loss whose ``group`` inputs are reconstructed jointly; see
:mod:`leakaudit.attacks.objective` for the shared gradient-matching objective.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from leakaudit.attacks.base import (
    BUDGETS,
    AttackResult,
    AttackTarget,
    Budget,
    Progress,
    check_budget,
)
from leakaudit.attacks.dlg import DLGConfig, dlg_attack
from leakaudit.attacks.idlg import idlg_attack, infer_labels
from leakaudit.attacks.ig import IGConfig, ig_attack
from leakaudit.attacks.objective import make_per_sample_grads, observed_gradients
from leakaudit.attacks.space import InputSpace
from leakaudit.registry import Registry

AttackConfig = DLGConfig | IGConfig


class AttackEntry(NamedTuple):
    """A registered attack: its hyperparameter class and the attack itself."""

    config: type[AttackConfig]
    attack: Callable[..., AttackResult]


#: Attack name → its entry, in report order.
REGISTRY: Registry[AttackEntry] = Registry(
    "attack",
    [
        ("dlg", AttackEntry(DLGConfig, dlg_attack)),
        ("idlg", AttackEntry(DLGConfig, idlg_attack)),
        ("ig", AttackEntry(IGConfig, ig_attack)),
    ],
)

#: Attack names, in report order.
ATTACKS: tuple[str, ...] = REGISTRY.names()


def check_attacks(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Return ``names`` de-duplicated in report order, or raise ``ValueError``."""
    return REGISTRY.select(names)


def attack_config(name: str, budget: Budget = "standard", **overrides: Any) -> AttackConfig:
    """The published defaults of attack ``name`` at ``budget``, with ``overrides``.

    Raises:
        ValueError: unknown attack, budget or hyperparameter (the message names it).
    """
    base: AttackConfig = REGISTRY[name].config.for_budget(check_budget(budget))
    fields = set(base.__dataclass_fields__)
    bad = sorted(set(overrides) - fields)
    if bad:
        raise ValueError(f"attack {name!r} has no setting {bad[0]!r}; it has: {sorted(fields)}")
    return replace(base, **overrides)


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Flush subnormal floats to zero on CPU while attacking.

    Near convergence the matching loss and its gradients underflow into subnormal
    numbers, which x86 CPUs process up to ~10× slower; results are unchanged at the
    precision that matters. The flag is process-wide, so it is reset to torch's default
    (off) afterwards.
    """
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def run_attack(
    name: str,
    model: nn.Module,
    observed: Tensor,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    space: InputSpace,
    labels: Tensor | None = None,
    budget: Budget = "standard",
    config: AttackConfig | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    group: int = 1,
) -> AttackResult:
    """Run attack ``name`` on each row of ``observed`` ``[G, P]``.

    Args:
        name: ``"dlg"``, ``"idlg"`` or ``"ig"``.
        model: the client's model, in the mode the client trains with.
        observed: ``[G, P]`` gradients the server received (after the defence).
        input_shape: shape of one input.
        num_classes: C.
        space: the model's input space (IG's pixel box).
        labels: ``[G·group]`` labels the attacker is given (IG with ``labels="known"``;
            iDLG on batches).
        budget: iteration preset when ``config`` is not given.
        config: explicit hyperparameters (``attack_config`` builds them).
        seed: seeds the random starts.
        progress: ``progress(done, total)`` in iterations.
        group: inputs behind each row of ``observed`` (the client's batch size).

    Returns:
        The reconstructions ``[G·group, ...]`` in model space.
    """
    cfg = config or attack_config(name, budget)
    config_class, attack = REGISTRY[name]
    assert isinstance(cfg, config_class)
    target = AttackTarget(model, observed, input_shape, num_classes, space, labels, seed, group)
    with flush_denormals():
        return attack(target, cfg, progress)


__all__ = [
    "ATTACKS",
    "BUDGETS",
    "REGISTRY",
    "AttackConfig",
    "AttackEntry",
    "AttackResult",
    "AttackTarget",
    "Budget",
    "DLGConfig",
    "IGConfig",
    "InputSpace",
    "attack_config",
    "check_attacks",
    "dlg_attack",
    "idlg_attack",
    "ig_attack",
    "infer_labels",
    "make_per_sample_grads",
    "observed_gradients",
    "run_attack",
]
