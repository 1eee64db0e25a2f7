"""What every attack takes and returns, and the budget presets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn

from leakaudit.attacks.space import InputSpace
from leakaudit.registry import Registry

Budget = Literal["fast", "standard", "paper"]

#: Attack budgets, cheapest first: name → what it is for. Each attack keeps its own
#: presets keyed by these names (``dlg.DLG_ITERATIONS``, ``ig.IG_BUDGETS``).
BUDGETS: Registry[str] = Registry(
    "budget",
    [
        ("fast", "a quick look: about a fifth of standard's iterations"),
        ("standard", "the default"),
        ("paper", "the reference implementations' iteration counts, the slowest"),
    ],
)

#: progress(done, total), in optimiser iterations.
Progress = Callable[[int, int], None]


def check_budget(budget: str) -> Budget:
    """Return ``budget``.

    Raises:
        UnknownNameError: a ``ValueError`` naming the closest budget, or the choices.
    """
    return cast(Budget, BUDGETS.check(budget))


@dataclass(frozen=True)
class AttackTarget:
    """What the server holds when it attacks a batch: every attack's input.

    Each row of ``observed`` is an independent problem: the gradient of the mean loss of
    ``group`` inputs (one client batch, reconstructed jointly; Geiping et al. 2020 §5),
    or of one sample when ``group`` is 1.

    Attributes:
        model: the client's model, in the mode the client trains with.
        observed: ``[G, P]`` gradients the server received (after the defence).
        input_shape: shape of one input, e.g. ``(C, H, W)``.
        num_classes: C.
        space: the model's input space (IG's pixel box; DLG and iDLG are unboxed).
        labels: ``[G·group]`` labels the attacker is given: used by IG with
            ``labels="known"``, and by iDLG when ``group`` > 1 (its label trick reads one
            label per gradient).
        seed: seeds the random starts.
        group: inputs behind each row of ``observed``, the client's batch size.
    """

    model: nn.Module
    observed: Tensor
    input_shape: tuple[int, ...]
    num_classes: int
    space: InputSpace
    labels: Tensor | None = None
    seed: int = 0
    group: int = 1

    @property
    def batch_size(self) -> int:
        """G, the independent problems (rows of ``observed``)."""
        return self.observed.shape[0]

    @property
    def n_inputs(self) -> int:
        """G·group, the inputs reconstructed."""
        return self.observed.shape[0] * self.group

    def generator(self) -> torch.Generator:
        """A fresh CPU generator seeded with :attr:`seed`, for :func:`random_start`."""
        return torch.Generator().manual_seed(self.seed)


@dataclass(frozen=True)
class AttackResult:
    """Reconstructions of the inputs of every problem of an :class:`AttackTarget`.

    Attributes:
        attack: the attack's name (``"dlg"``, ``"idlg"``, ``"ig"``).
        reconstruction: ``[G·group, ...]`` candidate inputs in the model's input space,
            problem by problem (a batch's candidates in no particular order).
        labels: ``[G·group]`` int64, the label each reconstruction was matched with
            (jointly optimised for DLG, inferred or given for iDLG, given or inferred for
            IG).
        matching_loss: ``[G·group]`` the attack's own gradient-matching distance at the
            end, its problem's for each input (L2 for DLG/iDLG, 1 − cos for IG, without
            the TV prior).
        iterations: optimiser iterations run (per restart for IG).
        config: the hyperparameters used.
    """

    attack: str
    reconstruction: Tensor
    labels: Tensor
    matching_loss: Tensor
    iterations: int
    config: dict[str, Any]


def config_dict(config: object) -> dict[str, Any]:
    """A dataclass config as a JSON-friendly dict."""
    out = asdict(config)  # type: ignore[call-overload]
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def random_start(shape: tuple[int, ...], generator: torch.Generator, like: Tensor) -> Tensor:
    """Standard-normal starting point drawn on the CPU generator (device-independent)."""
    start = torch.randn(shape, generator=generator, dtype=torch.float32)
    return start.to(device=like.device, dtype=like.dtype)
