"""``validate`` and ``calibrate`` attacks sharded over the ranks of a ``torchrun`` job.

A validation's work is a list of units, each attack on each batch of the selected
samples (:class:`~leakaudit.validation.run.AttackUnit`), every one seeded by the run's
seed alone. Every rank selects the same samples and computes the same defended
gradients (cheap: one gradient per sample, the defence's noise drawn in one order);
unit ``k`` is then attacked by rank ``k mod size`` only. The units run on the batches a
single process forms, so each rank's reconstructions are those of a single process, bit
for bit; they are exchanged as tensors (:mod:`leakaudit.distributed.exchange`), and
every rank computes the same agreements. Only rank 0 writes.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

from leakaudit.attacks import AttackResult
from leakaudit.distributed import (
    _JOINED,
    IdleRankWarning,
    ProgressFn,
    World,
    _backend,
    _Counter,
    current_world,
)
from leakaudit.distributed.exchange import Payload, PayloadError, all_gather_payloads
from leakaudit.validation.run import AttackUnit, UnitResult

#: Least seconds between two updates of the job's progress count from one rank.
RELAY_SECONDS = 0.2


class ShardedAttacks:
    """A :data:`~leakaudit.validation.run.Spread` over the job's ranks (all units here
    outside torchrun), with the progress relay and the record of who attacked what.

    Use it inside :func:`leakaudit.distributed.process_group`.

    Attributes:
        section: after a run, the result's ``distributed`` section: ``world_size``,
            ``process_group`` and per rank the ``units`` (attack × batch) it ran, the
            ``samples`` they attacked, its attack ``seconds`` and ``samples_per_second``.
    """

    def __init__(self, device: torch.device, progress: ProgressFn | None = None) -> None:
        self.world: World = current_world()
        self.device = device
        self.counter = _Counter(_JOINED[-1] if _JOINED else None, self.world)
        self.counter.progress = progress if self.world.main else None
        self.sent = 0
        self.pending = 0
        self.last = 0.0
        self.section: dict[str, Any] | None = None

    def relay(self, done: int, total: int) -> None:
        """The local ``progress(done, total)`` of the attacks (iterations run here),
        added to the job's count; rank 0 shows the count over all ranks."""
        self.counter.total = total
        self.pending = done - self.sent
        now = time.monotonic()
        if now - self.last >= RELAY_SECONDS or done == total:
            self._flush(now)

    def _flush(self, now: float) -> None:
        self.sent, self.last, pending, self.pending = self.sent + self.pending, now, self.pending, 0
        self.counter.add(pending)

    def __call__(
        self, units: list[AttackUnit], run: Callable[[AttackUnit], UnitResult]
    ) -> list[UnitResult]:
        """Run this rank's units (``k mod size == rank``), then every rank's results."""
        world = self.world
        if len(units) < world.size:
            warnings.warn(
                f"{world.size - len(units)} of {world.size} ranks have nothing to attack: "
                f"the run has {len(units)} unit(s) (attacks × batches)",
                IdleRankWarning,
                stacklevel=2,
            )
        mine = {k: run(u) for k, u in enumerate(units) if k % world.size == world.rank}
        self._flush(time.monotonic())
        self.counter.wait_all(self.counter.progress)
        sent = _payload(mine, units, world)
        payloads = all_gather_payloads(sent, world.size)
        self.section = {
            "world_size": world.size,
            "process_group": _backend(self.device) if world.size > 1 else None,
            "ranks": [p.meta["stats"] for p in payloads],
        }
        return [mine.get(k) or _received(payloads, k, self.device) for k in range(len(units))]


def _payload(mine: dict[int, UnitResult], units: list[AttackUnit], world: World) -> Payload:
    """This rank's unit results and statistics."""
    seconds = sum(r.seconds for r in mine.values())
    samples = sum(units[k].samples for k in mine)
    heads = {
        str(k): {
            "attack": r.result.attack,
            "iterations": r.result.iterations,
            "config": r.result.config,
            "seconds": r.seconds,
        }
        for k, r in mine.items()
    }
    meta: dict[str, Any] = {
        "units": heads,
        "stats": {
            "rank": world.rank,
            "units": len(mine),
            "samples": samples,
            "seconds": seconds,
            "samples_per_second": samples / seconds if seconds > 0 else None,
        },
    }
    tensors = {}
    for k, r in mine.items():
        tensors[f"{k}/reconstruction"] = r.result.reconstruction
        tensors[f"{k}/labels"] = r.result.labels
        tensors[f"{k}/matching_loss"] = r.result.matching_loss
    return Payload(meta, tensors)


def _received(payloads: list[Payload], k: int, device: torch.device) -> UnitResult:
    """Unit ``k``'s result from the rank that ran it, on ``device``."""
    owner = payloads[k % len(payloads)]
    try:
        head, t = owner.meta["units"][str(k)], owner.tensors
        result = AttackResult(
            attack=str(head["attack"]),
            reconstruction=t[f"{k}/reconstruction"].to(device),
            labels=t[f"{k}/labels"].to(device),
            matching_loss=t[f"{k}/matching_loss"].to(device),
            iterations=int(head["iterations"]),
            config=dict(head["config"]),
        )
        return UnitResult(result, float(head["seconds"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise PayloadError(f"rank {k % len(payloads)} sent no result of unit {k}: {exc}") from None


__all__ = ["RELAY_SECONDS", "ShardedAttacks"]
