"""``validate``: attack a subset of samples and measure how each score predicts how well
they are reconstructed.

The attacker sees each selected sample's gradient after the client's defence
(``defense.apply``), reconstructs it with each attack (all samples at once, as
independent problems), and the reconstruction is compared with the original (MSE,
PSNR, SSIM, LPIPS when available). With ``client_batch`` = B the attacker sees instead
the defended gradient of each client batch's mean loss, reconstructs its B inputs
jointly, and each reconstruction is paired with an original by the assignment that
maximises the batch's total PSNR (:mod:`leakaudit.validation.pairing`). Each score
is then compared with each quality metric across the samples (rank correlations with
bootstrap intervals, precision@k; :mod:`leakaudit.metrics.agreement`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from leakaudit.attacks import (
    AttackConfig,
    AttackResult,
    Budget,
    InputSpace,
    attack_config,
    check_attacks,
    observed_gradients,
    run_attack,
)
from leakaudit.attacks.base import check_budget, config_dict
from leakaudit.attacks.objective import batch_mean
from leakaudit.defenses import Defense, NoDefense
from leakaudit.direction import orient
from leakaudit.metrics.agreement import Agreement, agreement
from leakaudit.metrics.quality import METRICS, quality_metrics
from leakaudit.scores.engine import resolve_device
from leakaudit.scores.names import ALL_SCORES, SCORES
from leakaudit.scores.risk import Risk, resolve_risk
from leakaudit.validation.pairing import pair_batches
from leakaudit.validation.result import ValidationResult, summarise
from leakaudit.validation.selection import select, select_batches

#: progress(done, total) in attack iterations over all attacks.
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class AttackSettings:
    """How one run attacks the selected samples and measures the agreement.

    Attributes:
        attacks: attack names (``dlg``, ``idlg``, ``ig``), in report order.
        defense: the client's defence; the attacker sees ``defense.apply(g*)``.
        budget: ``fast``, ``standard`` or ``paper`` iteration preset.
        space: the input space (pixel box, un-normalisation).
        configs: attack → its hyperparameters (the explicit ones, else the budget's).
        batch_size: samples attacked together (rounded down to whole client batches, at
            least one).
        seed: seeds selection, defence noise, attack starts and the bootstrap.
        device: where to attack.
        n_resamples: bootstrap resamples.
        use_lpips: compute LPIPS when it is available locally.
        group: the client's batch size B when the server sees batch gradients, else
            ``None`` (one gradient per sample).
    """

    attacks: tuple[str, ...]
    defense: Defense
    budget: Budget
    space: InputSpace
    configs: dict[str, AttackConfig]
    batch_size: int
    seed: int
    device: torch.device
    n_resamples: int
    use_lpips: bool
    group: int | None = None

    @classmethod
    def check(
        cls,
        attacks: Sequence[str],
        budget: str,
        configs: Mapping[str, AttackConfig] | None,
        defense: Defense | None,
        space: InputSpace | None,
        batch_size: int,
        seed: int,
        device: str | torch.device,
        n_resamples: int,
        use_lpips: bool,
        group: int | None = None,
    ) -> AttackSettings:
        """The settings of :func:`validate`'s arguments, checked, with their defaults: the
        budget's hyperparameters, no defence, the ``[0, 1]`` input space.

        Raises:
            ValueError: an unknown attack or budget; CUDA asked for but absent; a
                client batch size below 1.
        """
        if group is not None and group < 1:
            raise ValueError(f"batch size must be >= 1, got {group}")
        names = check_attacks(list(attacks))
        checked = check_budget(budget)
        cfgs = {a: (configs or {}).get(a) or attack_config(a, checked) for a in names}
        return cls(
            names, defense or NoDefense(), checked, space or InputSpace(), cfgs, batch_size,
            seed, resolve_device(str(device)), n_resamples, use_lpips, group,
        )  # fmt: skip

    def describe(self, selection: dict[str, Any]) -> dict[str, Any]:
        """The result's ``config``: these settings and how the samples were ``selection``
        (and, for batch gradients, ``batch_threat``: B, the labels given, the pairing)."""
        batches = {} if self.group is None else {"batch_threat": _batch_threat(self.group)}
        return {
            "attacks": list(self.attacks),
            "budget": self.budget,
            "defense": self.defense.describe(),
            "selection": selection,
            "attack_configs": {a: config_dict(c) for a, c in self.configs.items()},
            "seed": self.seed,
            "device": str(self.device),
            **batches,
        }


def _batch_threat(group: int) -> dict[str, Any]:
    """What the attacker of batch gradients knows, and how its reconstructions are paired."""
    return {
        "batch_size": group,
        "labels": "dlg optimises them; idlg and ig are given each batch's labels as a "
        "multiset (sorted), not which sample has which"
        if group > 1
        else "as for single samples",
        "pairing": "the assignment of reconstructions to originals that maximises the "
        "batch's total PSNR (Hungarian method)",
    }


def validate(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    scores: dict[str, Tensor],
    *,
    attacks: Sequence[str] = ("dlg", "ig"),
    defense: Defense | None = None,
    budget: Budget = "standard",
    space: InputSpace | None = None,
    n_samples: int = 32,
    selection: str | Sequence[int] = "stratified",
    risk: Risk | None = None,
    risk_score: str | None = None,
    directions: dict[str, str] | None = None,
    ids: Sequence[str] | None = None,
    attack_configs: dict[str, AttackConfig] | None = None,
    batch_size: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    n_resamples: int = 1000,
    use_lpips: bool = True,
    progress: ProgressFn | None = None,
    client_batch: int | None = None,
    spread: Spread | None = None,
) -> ValidationResult:
    """Attack a subset of samples and measure how each score predicts reconstruction.

    Args:
        model: the client's model (copied; the copy is put in eval mode on ``device``).
        inputs: ``[N, C, H, W]`` samples in the model's input space; ``labels``: ``[N]``.
        scores: SPEC score name → ``[N]`` values for these samples.
        n_samples: samples to attack under ``"stratified"`` selection.
        selection: ``"stratified"`` over the risk ranking, or positions.
        risk: the run's risk score and directions, resolved once (:class:`Risk`); else
            ``risk_score`` and ``directions`` (overrides) resolve them
            (:func:`~leakaudit.scores.risk.resolve_risk` over ``scores``).
        ids: display ids per input position.
        device: where to attack: ``auto`` (CUDA when available), ``cpu``, ``cuda``.
        progress: ``progress(done, total)`` in attack iterations.
        client_batch: B: the server sees client batches of B inputs, all attacked.
        spread: runs the attack units (:data:`Spread`); here by default.
        attacks, defense, budget, space, attack_configs, batch_size, seed, n_resamples,
            use_lpips: as :class:`AttackSettings` describes them (``defense``: none,
            ``space``: ``[0, 1]``, when not given).

    Raises:
        ValueError: bad attack, budget, score, lengths or indices; ``risk`` and ``risk_score``.
    """
    settings = AttackSettings.check(
        attacks, budget, attack_configs, defense, space, batch_size, seed, device, n_resamples,
        use_lpips, client_batch,
    )  # fmt: skip
    order = check_scores(scores, inputs.shape[0])
    risk = _resolve_risk(risk, risk_score, directions, scores)
    idx, chosen = _select(scores, risk, selection, n_samples, settings)
    picked = _Picked.take(idx, inputs, labels, {s: scores[s] for s in order}, ids, settings.device)
    net = copy.deepcopy(model).to(settings.device).eval()
    attacked = _attack(net, picked.x, picked.y, settings, progress, spread or run_here)
    return _result(picked, risk, settings, chosen, attacked)


def _select(
    scores: Mapping[str, Tensor],
    risk: Risk,
    selection: str | Sequence[int],
    n_samples: int,
    settings: AttackSettings,
) -> tuple[Tensor, dict[str, Any]]:
    """The positions to attack and how they were chosen: :func:`select` over the risk
    ranking, or every client batch (:func:`select_batches`) when the server sees batch
    gradients."""
    risky = orient(scores[risk.score], risk.direction)
    if settings.group is None:
        return select(risky, selection, n_samples, risk.score, settings.seed)
    return select_batches(risky, settings.group, risk.score)


def _resolve_risk(
    risk: Risk | None,
    risk_score: str | None,
    directions: Mapping[str, str] | None,
    scores: Mapping[str, Tensor],
) -> Risk:
    """``risk`` when the caller resolved it, else resolved from ``risk_score`` and
    ``directions`` over the given ``scores``.

    Raises:
        ValueError: both were given, or the risk score is not among ``scores``.
    """
    if risk is None:
        return resolve_risk(risk_score, directions, available=scores)
    if risk_score is not None or directions is not None:
        raise ValueError("give either risk or risk_score and directions, not both")
    if risk.score not in scores:
        raise ValueError(f"risk score {risk.score!r} is not among the given scores")
    return risk


@dataclass
class _Picked:
    """The selected samples: positions, ids, inputs ``[n, C, H, W]`` and labels ``[n]`` on
    the attack device, and their scores (score → ``[n]`` float64 on the CPU)."""

    indices: Tensor
    ids: list[str]
    x: Tensor
    y: Tensor
    scores: dict[str, Tensor]

    @classmethod
    def take(
        cls,
        indices: Tensor,
        inputs: Tensor,
        labels: Tensor,
        scores: Mapping[str, Tensor],
        ids: Sequence[str] | None,
        device: torch.device,
    ) -> _Picked:
        """The samples at ``indices`` of ``inputs``; ``ids`` default to the positions."""
        every = list(ids) if ids is not None else [str(i) for i in range(inputs.shape[0])]
        return cls(
            indices,
            [every[int(i)] for i in indices],
            inputs[indices].to(device, torch.float32),
            labels[indices].to(device).long(),
            {s: v.double().cpu()[indices] for s, v in scores.items()},
        )


def _result(
    picked: _Picked,
    risk: Risk,
    settings: AttackSettings,
    selection: dict[str, Any],
    attacked: _Attacked,
) -> ValidationResult:
    """The agreement of every score with every attack's quality, and the result."""
    dirs: dict[str, str] = dict(risk.only(picked.scores))
    records = _agreements(
        picked.scores,
        attacked.quality,
        dirs,
        attacked.notes,
        n_resamples=settings.n_resamples,
        seed=settings.seed,
    )
    return ValidationResult(
        indices=picked.indices,
        ids=picked.ids,
        labels=picked.y.cpu(),
        risk_score=risk.score,
        directions=dirs,
        scores=picked.scores,
        originals=settings.space.to_unit(picked.x).clamp(0, 1).cpu(),
        reconstructions=attacked.reconstructions,
        attack_labels=attacked.labels,
        matching_loss=attacked.losses,
        quality=attacked.quality,
        agreement=records,
        summary={a: summarise(a, records, dirs) for a in settings.attacks},
        config=settings.describe(selection),
        notes=attacked.notes,
        seconds=attacked.seconds,
        batch_size=settings.group,
        batch=None if settings.group is None else torch.arange(len(picked.ids)) // settings.group,
    )


def check_scores(scores: dict[str, Tensor], n_inputs: int) -> list[str]:
    """The names of ``scores`` in report order, after checking them.

    Raises:
        ValueError: no scores, an unknown name, or a score whose length is not ``n_inputs``.
    """
    for name, values in scores.items():
        SCORES.check(name)
        if values.shape[0] != n_inputs:
            raise ValueError(f"score {name!r} has {values.shape[0]} values for {n_inputs} inputs")
    if not scores:
        raise ValueError("validate needs at least one score")
    return [s for s in ALL_SCORES if s in scores]


@dataclass
class _Attacked:
    """Every attack's outcome on the selected samples (CPU tensors)."""

    reconstructions: dict[str, Tensor] = field(default_factory=dict)
    labels: dict[str, Tensor] = field(default_factory=dict)
    losses: dict[str, Tensor] = field(default_factory=dict)
    quality: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Progress:
    """Attack progress over every attack and batch, in iterations run here (units may run
    in any order, or in another process: :data:`Spread`)."""

    report: ProgressFn | None
    total: int
    done: int = 0

    def batch(self, iterations: int) -> tuple[ProgressFn, Callable[[], None]]:
        """The callback of the next batch, which runs ``iterations`` iterations, and the
        call that counts the rest of them once the batch has ended (early or not)."""
        seen = 0

        def tick(done: int, total: int) -> None:
            nonlocal seen
            self.done += done - seen
            seen = done
            if self.report is not None:
                self.report(self.done, self.total)

        return tick, lambda: tick(iterations, iterations)


@dataclass(frozen=True)
class AttackUnit:
    """One attack on one batch of the selected samples: the work a process can take.

    Attributes:
        attack: the attack's name; ``batch``: the batch's number; ``samples``: its size.
        iterations: the attack's iterations (its progress total).
    """

    attack: str
    batch: int
    samples: int
    iterations: int


@dataclass(frozen=True)
class UnitResult:
    """A unit's reconstructions and the seconds it took."""

    result: AttackResult
    seconds: float


#: ``spread(units, run)``: ``run(unit)`` of every unit, in order. :func:`run_here` runs
#: them all in this process; a sharded run (``leakaudit.distributed.attacks``) runs some
#: here and receives the others. Each unit is seeded alone, so the results are the same.
Spread = Callable[[list[AttackUnit], Callable[[AttackUnit], UnitResult]], list[UnitResult]]


def run_here(units: list[AttackUnit], run: Callable[[AttackUnit], UnitResult]) -> list[UnitResult]:
    """Every unit, one after another, in this process."""
    return [run(u) for u in units]


@dataclass
class _Attacker:
    """Runs one attack after another on the defended gradients, batch by batch.

    Attributes:
        net: the model in eval mode, on ``x``'s device.
        x: ``[n, C, H, W]`` selected samples; ``y``: the ``[n]`` labels the attacker is
            given (each client batch's sorted).
        observed: ``[n / B, P]`` their (batches') gradients after the defence: what the
            attacker sees.
        num_classes: the model's outputs.
        settings: the run's attack settings.
        batches: the samples attacked together (whole client batches).
        progress: the run's progress.
    """

    net: nn.Module
    x: Tensor
    y: Tensor
    observed: Tensor
    num_classes: int
    settings: AttackSettings
    batches: list[slice]
    progress: _Progress

    def units(self) -> list[AttackUnit]:
        """Every attack on every batch, attack by attack."""
        return [
            AttackUnit(a, i, len(range(*b.indices(self.x.shape[0]))), _iterations(cfg))
            for a, cfg in self.settings.configs.items()
            for i, b in enumerate(self.batches)
        ]

    def run(self, unit: AttackUnit) -> UnitResult:
        """Attack ``unit.attack`` on batch ``unit.batch`` (seeded by the run's seed alone)."""
        b = self.batches[unit.batch]
        k = self.settings.group or 1
        tick, finish = self.progress.batch(unit.iterations)
        start = time.perf_counter()
        result = run_attack(
            unit.attack,
            self.net,
            self.observed[b.start // k : b.stop // k],
            input_shape=tuple(self.x.shape[1:]),
            num_classes=self.num_classes,
            space=self.settings.space,
            labels=self.y[b],
            config=self.settings.configs[unit.attack],
            seed=self.settings.seed,
            progress=tick,
            group=k,
        )
        finish()
        return UnitResult(result, time.perf_counter() - start)


def _iterations(config: AttackConfig) -> int:
    return int(getattr(config, "iterations", 1))


def _attack(
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    settings: AttackSettings,
    progress: ProgressFn | None,
    spread: Spread = run_here,
) -> _Attacked:
    """Run each attack on the defended gradients of ``x`` and measure quality.

    Args:
        net: the model in eval mode, on ``x``'s device.
        x: ``[n, C, H, W]`` selected samples; ``y``: their ``[n]`` labels.
        settings: the attacks, the defence applied to each gradient before the attacker
            sees it (its noise seeded by ``settings.seed``), the input space
            (reconstructions are compared in [0, 1]), the batch size and the client's.
        progress: ``progress(done, total)`` in attack iterations over all attacks.
        spread: runs the units (every attack on every batch): here, or sharded.
    """
    with torch.no_grad():
        num_classes = int(net(x[:1]).shape[1])
    k = settings.group or 1
    size = max(k, settings.batch_size // k * k)
    batches = [slice(s, s + size) for s in range(0, x.shape[0], size)]
    gen = torch.Generator().manual_seed(settings.seed)
    defended = [
        settings.defense.apply(batch_mean(observed_gradients(net, x[b], y[b], num_classes), k), gen)
        for b in batches
    ]
    iterations = sum(_iterations(c) for c in settings.configs.values())
    ticks = _Progress(progress, iterations * len(batches))
    given = _given_labels(y, k)
    attacker = _Attacker(net, x, given, torch.cat(defended), num_classes, settings, batches, ticks)
    units = attacker.units()
    done = spread(units, attacker.run)
    originals = settings.space.to_unit(x).clamp(0, 1).cpu()
    out = _Attacked()
    for a in settings.configs:
        parts = [r for u, r in zip(units, done) if u.attack == a]
        out.seconds[a] = sum(r.seconds for r in parts)
        joined = _joined([r.result for r in parts], settings.space)
        paired = pair_batches(joined[0], originals, k)
        out.reconstructions[a], out.labels[a], out.losses[a] = (t[paired] for t in joined)
        out.quality[a], qnotes = quality_metrics(
            out.reconstructions[a], originals, use_lpips=settings.use_lpips
        )
        out.notes.extend(n for n in qnotes if n not in out.notes)
    return out


def _given_labels(y: Tensor, group: int) -> Tensor:
    """The labels the attacker is given: each client batch's sorted (which sample has
    which label is not known), ``[n]``; at B = 1 the labels themselves."""
    if group == 1:
        return y
    return y.reshape(-1, group).sort(dim=1).values.flatten()


def _joined(parts: list[AttackResult], space: InputSpace) -> tuple[Tensor, Tensor, Tensor]:
    """One attack's batches joined on the CPU: reconstructions ``[n, C, H, W]`` in [0, 1],
    matched labels ``[n]`` and float64 matching losses ``[n]``."""
    rec = torch.cat([p.reconstruction for p in parts])
    return (
        space.to_unit(rec).clamp(0, 1).cpu(),
        torch.cat([p.labels for p in parts]).cpu(),
        torch.cat([p.matching_loss for p in parts]).double().cpu(),
    )


def _agreements(
    scores: dict[str, Tensor],
    quality: dict[str, dict[str, Tensor]],
    directions: dict[str, str],
    notes: list[str],
    *,
    n_resamples: int,
    seed: int,
) -> list[Agreement]:
    """One :func:`~leakaudit.metrics.agreement.agreement` per attack × score × metric.

    A sample whose score is not finite is left out of that score's records, and a note
    saying how many is added to ``notes`` (once).

    Args:
        scores: score → ``[n]`` float64 values of the validated samples.
        quality: attack → metric → ``[n]``.
        directions: score → risk direction.
        notes: the run's notes, extended in place.
        n_resamples: bootstrap resamples.
        seed: seeds the bootstrap.
    """
    records = []
    for a, metrics in quality.items():
        for s, values in scores.items():
            ok = torch.isfinite(values)  # a non-finite score leaves its sample out
            if not bool(ok.all()):
                note = f"{s}: {int((~ok).sum())} validated samples have no finite value"
                if note not in notes:
                    notes.append(note)
            for m, measured in metrics.items():
                records.append(
                    agreement(
                        values[ok],
                        measured[ok],
                        score_name=s,
                        attack=a,
                        metric=m,
                        score_direction=directions[s],
                        metric_direction=METRICS[m].direction,
                        n_resamples=n_resamples,
                        seed=seed,
                    )
                )
    return records
