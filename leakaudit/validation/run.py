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
from leakaudit.scores.names import SCORES
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
        risk_score: score that orders the selection; default
            :func:`~leakaudit.scores.risk.default_risk_score` of the given scores.
        directions: risk direction overrides per score (default: the shipped ones).
        ids: display ids per input position.
        attack_configs: explicit hyperparameters per attack (else the budget's).
        batch_size: samples attacked together.
        seed: seeds selection, defence noise, attack starts and the bootstrap.
        device: where to attack.
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
    n_all = inputs.shape[0]
    for name, values in scores.items():
        SCORES.check(name)
        if values.shape[0] != n_all:
            raise ValueError(f"score {name!r} has {values.shape[0]} values for {n_all} inputs")
    if not scores:
        raise ValueError("validate needs at least one score")
    resolved = resolve_risk(risk_score, directions, available=scores)
    dirs: dict[str, str] = dict(resolved.only(scores))
    risk_name, order = resolved.score, list(dirs)
    risk = orient(scores[risk_name], resolved.direction)
    idx, selection_desc = select(risk, selection, n_samples, risk_name, seed)

    dev = torch.device(device)
    net = copy.deepcopy(model).to(dev).eval()
    x = inputs[idx].to(dev, torch.float32)
    y = labels[idx].to(dev).long()
    with torch.no_grad():
        num_classes = int(net(x[:1]).shape[1])
    cfgs = {a: (attack_configs or {}).get(a) or attack_config(a, budget) for a in names}
    iters = {a: getattr(c, "iterations", 1) for a, c in cfgs.items()}
    chunks = [slice(s, s + batch_size) for s in range(0, len(idx), batch_size)]
    total, done = sum(iters.values()) * len(chunks), 0

    gen = torch.Generator().manual_seed(seed)
    observed = torch.cat(
        [defense.apply(observed_gradients(net, x[c], y[c], num_classes), gen) for c in chunks]
    )
    originals = space.to_unit(x).clamp(0, 1).cpu()
    recon, att_labels, losses, quality, seconds = {}, {}, {}, {}, {}
    notes: list[str] = []
    for a in names:
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
                    config=cfgs[a],
                    seed=seed,
                    progress=tick,
                )
            )
            done += iters[a]
        seconds[a] = time.perf_counter() - start
        recon[a], att_labels[a], losses[a] = _joined(parts, space)
        quality[a], qnotes = quality_metrics(recon[a], originals, use_lpips=use_lpips)
        notes.extend(n for n in qnotes if n not in notes)

    sel_scores = {s: scores[s].double().cpu()[idx] for s in order}
    records = _agreements(sel_scores, quality, dirs, notes, n_resamples=n_resamples, seed=seed)
    config = {
        "attacks": list(names),
        "budget": budget,
        "defense": defense.describe(),
        "selection": selection_desc,
        "attack_configs": {a: config_dict(c) for a, c in cfgs.items()},
        "seed": seed,
        "device": str(dev),
    }
    all_ids = list(ids) if ids is not None else [str(i) for i in range(n_all)]
    return ValidationResult(
        indices=idx,
        ids=[all_ids[int(i)] for i in idx],
        labels=y.cpu(),
        risk_score=risk_name,
        directions=dirs,
        scores=sel_scores,
        originals=originals,
        reconstructions=recon,
        attack_labels=att_labels,
        matching_loss=losses,
        quality=quality,
        agreement=records,
        summary={a: summarise(a, records, dirs) for a in names},
        config=config,
        notes=notes,
        seconds=seconds,
    )


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
