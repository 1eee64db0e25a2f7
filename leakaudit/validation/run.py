"""``validate``: attack a subset of samples and measure how each score predicts how well
they are reconstructed.

The attacker sees each selected sample's gradient after the client's defence
(``defense.apply``), reconstructs it with each attack (all samples at once, as
independent problems), and the reconstruction is compared with the original (MSE,
PSNR, SSIM, LPIPS when available). Each score is then compared with each quality
metric across the samples (rank correlations with bootstrap intervals, precision@k;
:mod:`leakaudit.metrics.agreement`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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
from leakaudit.defenses import Defense, NoDefense
from leakaudit.direction import orient
from leakaudit.metrics.agreement import Agreement, agreement
from leakaudit.metrics.quality import METRICS, quality_metrics
from leakaudit.scores.engine import resolve_device
from leakaudit.scores.names import ALL_SCORES, SCORES
from leakaudit.scores.risk import resolve_risk
from leakaudit.validation.result import ValidationResult, summarise
from leakaudit.validation.selection import select

#: progress(done, total) in attack iterations over all attacks.
ProgressFn = Callable[[int, int], None]


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
) -> ValidationResult:
    """Attack a subset of samples and measure how each score predicts reconstruction.

    Args:
        model: the client's model (copied; the copy is put in eval mode on ``device``).
        inputs: ``[N, C, H, W]`` samples in the model's input space.
        labels: ``[N]`` int64 labels.
        scores: SPEC score name → ``[N]`` values for these samples.
        attacks: attack names (``dlg``, ``idlg``, ``ig``).
        defense: the client's defence; the attacker sees ``defense.apply(g*)``.
        budget: ``fast``, ``standard`` or ``paper`` iteration preset.
        space: the input space (pixel box, un-normalisation); ``[0, 1]`` if not given.
        n_samples: samples to attack under ``"stratified"`` selection.
        selection: ``"stratified"`` over the ranking of ``risk_score``, or positions.
        risk_score: score that orders the selection; default: the shipped default risk
            score when given, else the first score in report order
            (:func:`leakaudit.scores.risk.default_risk_score`).
        directions: risk direction per score (default: SPEC).
        ids: display ids per input position.
        attack_configs: explicit hyperparameters per attack (else the budget's).
        batch_size: samples attacked together.
        seed: seeds selection, defence noise, attack starts and the bootstrap.
        device: where to attack: ``auto`` (CUDA when available), ``cpu``, ``cuda``.
        n_resamples: bootstrap resamples.
        use_lpips: compute LPIPS when it is available locally.
        progress: ``progress(done, total)`` in attack iterations.

    Returns:
        The :class:`ValidationResult`.

    Raises:
        ValueError: unknown attack, budget or score, mismatched lengths, bad indices.
    """
    names = check_attacks(list(attacks))
    budget = check_budget(budget)
    defense = defense or NoDefense()
    space = space or InputSpace()
    order = check_scores(scores, inputs.shape[0])
    resolved = resolve_risk(risk_score, directions, available=scores)
    dirs: dict[str, str] = dict(resolved.only(scores))
    risk_name = resolved.score
    risk = orient(scores[risk_name], resolved.direction)
    idx, selection_desc = select(risk, selection, n_samples, risk_name, seed)
    dev = resolve_device(str(device))
    net = copy.deepcopy(model).to(dev).eval()
    x = inputs[idx].to(dev, torch.float32)
    y = labels[idx].to(dev).long()
    cfgs = {a: (attack_configs or {}).get(a) or attack_config(a, budget) for a in names}
    attacked = _attack(net, x, y, cfgs, defense, space, batch_size, seed, use_lpips, progress)
    sel_scores = {s: scores[s].double().cpu()[idx] for s in order}
    records = _agreements(
        sel_scores, attacked.quality, dirs, attacked.notes, n_resamples=n_resamples, seed=seed
    )
    config = {
        "attacks": list(names),
        "budget": budget,
        "defense": defense.describe(),
        "selection": selection_desc,
        "attack_configs": {a: config_dict(c) for a, c in cfgs.items()},
        "seed": seed,
        "device": str(dev),
    }
    all_ids = list(ids) if ids is not None else [str(i) for i in range(inputs.shape[0])]
    return ValidationResult(
        indices=idx,
        ids=[all_ids[int(i)] for i in idx],
        labels=y.cpu(),
        risk_score=risk_name,
        directions={s: dirs[s] for s in order},
        scores=sel_scores,
        originals=space.to_unit(x).clamp(0, 1).cpu(),
        reconstructions=attacked.reconstructions,
        attack_labels=attacked.labels,
        matching_loss=attacked.losses,
        quality=attacked.quality,
        agreement=records,
        summary={a: summarise(a, records, dirs) for a in names},
        config=config,
        notes=attacked.notes,
        seconds=attacked.seconds,
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


def _attack(
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    cfgs: dict[str, AttackConfig],
    defense: Defense,
    space: InputSpace,
    batch_size: int,
    seed: int,
    use_lpips: bool,
    progress: ProgressFn | None,
) -> _Attacked:
    """Run each attack of ``cfgs`` on the defended gradients of ``x`` and measure quality.

    Args:
        net: the model in eval mode, on ``x``'s device.
        x: ``[n, C, H, W]`` selected samples; ``y``: their ``[n]`` labels.
        cfgs: attack name → its hyperparameters.
        defense: applied to each sample's gradient before the attacker sees it.
        space: the input space; reconstructions are compared in [0, 1].
        batch_size: samples attacked together.
        seed: seeds the defence noise and the attack starts.
        use_lpips: compute LPIPS when available.
        progress: ``progress(done, total)`` in attack iterations over all attacks.
    """
    with torch.no_grad():
        num_classes = int(net(x[:1]).shape[1])
    iters = {a: getattr(c, "iterations", 1) for a, c in cfgs.items()}
    chunks = [slice(s, s + batch_size) for s in range(0, x.shape[0], batch_size)]
    total, done = sum(iters.values()) * len(chunks), 0
    gen = torch.Generator().manual_seed(seed)
    observed = torch.cat(
        [defense.apply(observed_gradients(net, x[c], y[c], num_classes), gen) for c in chunks]
    )
    originals = space.to_unit(x).clamp(0, 1).cpu()
    out = _Attacked()
    for a, cfg in cfgs.items():
        start, parts = time.perf_counter(), []
        for c in chunks:

            def tick(d: int, t: int, base: int = done) -> None:
                if progress is not None:
                    progress(base + d, total)

            parts.append(
                run_attack(
                    a,
                    net,
                    observed[c],
                    input_shape=tuple(x.shape[1:]),
                    num_classes=num_classes,
                    space=space,
                    labels=y[c],
                    config=cfg,
                    seed=seed,
                    progress=tick,
                )
            )
            done += iters[a]
        out.seconds[a] = time.perf_counter() - start
        out.reconstructions[a], out.labels[a], out.losses[a] = _joined(parts, space)
        out.quality[a], qnotes = quality_metrics(
            out.reconstructions[a], originals, use_lpips=use_lpips
        )
        out.notes.extend(n for n in qnotes if n not in out.notes)
    return out


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
