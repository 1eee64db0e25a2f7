"""``validate``: run real gradient inversion attacks on a subset of samples and measure
how well each score predicts how well they are reconstructed.

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
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from leakaudit.attacks import (
    AttackConfig,
    Budget,
    InputSpace,
    attack_config,
    check_attacks,
    observed_gradients,
    run_attack,
)
from leakaudit.attacks.base import check_budget, config_dict
from leakaudit.defenses import Defense, NoDefense
from leakaudit.metrics.agreement import Agreement, agreement
from leakaudit.metrics.quality import METRIC_DIRECTIONS, quality_metrics
from leakaudit.scores.names import ALL_SCORES, SCORES

#: progress(done, total) in attack iterations over all attacks.
ProgressFn = Callable[[int, int], None]

#: The metric the summary ranks scores by.
PRIMARY_METRIC = "psnr"


def _finite(value: Tensor | float) -> float | None:
    """A float for JSON, ``None`` when not finite."""
    v = float(value)
    return v if np.isfinite(v) else None


def stratified_indices(risk: Tensor, n_samples: int, seed: int = 0) -> Tensor:
    """Pick ``n_samples`` positions spread evenly over the risk ranking.

    The N samples are ranked riskiest first (``risk`` is oriented so larger = riskier;
    ties by position), cut into ``n_samples`` contiguous strata of (nearly) equal size,
    and one sample is drawn uniformly from each stratum. Non-finite risks are skipped.

    Args:
        risk: ``[N]`` oriented risk values.
        n_samples: how many to pick (all finite ones if fewer exist).
        seed: seeds the draw inside each stratum.

    Returns:
        ``[n]`` int64 positions, riskiest first.
    """
    r = risk.detach().double().cpu().numpy()
    finite = np.flatnonzero(np.isfinite(r))
    order = finite[np.argsort(-r[finite], kind="stable")]
    if n_samples >= order.size:
        return torch.from_numpy(order.copy()).long()
    rng = np.random.default_rng(seed)
    picks = [int(rng.choice(stratum)) for stratum in np.array_split(order, n_samples)]
    return torch.tensor(picks, dtype=torch.long)


@dataclass
class ValidationResult:
    """What ``validate`` found. Tensors are on the CPU; images are in [0, 1].

    Attributes:
        indices: ``[n]`` positions of the validated samples in the given inputs.
        ids: sample ids for display (the positions as text when none were given).
        labels: ``[n]`` true labels.
        risk_score: the score that ordered the selection; samples are riskiest first.
        directions: score → risk direction used for the agreement verdicts.
        scores: score → ``[n]`` float64.
        originals: ``[n, C, H, W]``.
        reconstructions: attack → ``[n, C, H, W]`` (clipped to [0, 1]).
        attack_labels: attack → ``[n]`` label each reconstruction was matched with.
        matching_loss: attack → ``[n]`` final gradient-matching loss.
        quality: attack → metric → ``[n]`` float64.
        agreement: one record per score × attack × metric.
        summary: attack → which score predicts PSNR best, and a sentence saying so.
        config: budget, defence, selection, attack hyperparameters, seed, device.
        notes: things skipped and why (e.g. LPIPS).
        seconds: attack → wall time.
    """

    indices: Tensor
    ids: list[str]
    labels: Tensor
    risk_score: str
    directions: dict[str, str]
    scores: dict[str, Tensor]
    originals: Tensor
    reconstructions: dict[str, Tensor]
    attack_labels: dict[str, Tensor]
    matching_loss: dict[str, Tensor]
    quality: dict[str, dict[str, Tensor]]
    agreement: list[Agreement]
    summary: dict[str, dict[str, Any]]
    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The report's ``validation`` section (plain JSON types; undefined → ``None``)."""
        samples = []
        for j in range(len(self.indices)):
            samples.append(
                {
                    "index": int(self.indices[j]),
                    "id": self.ids[j],
                    "label": int(self.labels[j]),
                    "scores": {k: _finite(v[j]) for k, v in self.scores.items()},
                    "attacks": {
                        a: {
                            **{m: _finite(q[m][j]) for m in q},
                            "label": int(self.attack_labels[a][j]),
                            "label_correct": int(self.attack_labels[a][j]) == int(self.labels[j]),
                            "matching_loss": _finite(self.matching_loss[a][j]),
                        }
                        for a, q in self.quality.items()
                    },
                }
            )
        return {
            **self.config,
            "risk_score": self.risk_score,
            "directions": dict(self.directions),
            "n_samples": len(self.indices),
            "samples": samples,
            "agreement": [a.to_dict() for a in self.agreement],
            "summary": self.summary,
            "notes": list(self.notes),
            "seconds": dict(self.seconds),
        }


def _summarise(attack: str, records: list[Agreement], directions: dict[str, str]) -> dict[str, Any]:
    rows = [r for r in records if r.attack == attack and r.metric == PRIMARY_METRIC]
    defined = [r for r in rows if r.spearman.value is not None]
    if not defined:
        return {
            "best_score": None,
            "metric": PRIMARY_METRIC,
            "sentence": f"{attack}: no score has a defined rank correlation with PSNR.",
        }
    best = max(defined, key=lambda r: abs(r.spearman.value or 0.0))
    rho = best.spearman
    ci = f"95% CI [{rho.ci95[0]:+.2f}, {rho.ci95[1]:+.2f}]" if rho.ci95 else "no CI"
    verdict = {
        "held": "its SPEC risk direction held",
        "reversed": "its SPEC risk direction was REVERSED (the opposite ordering predicts)",
        "inconclusive": "the sign of the effect is not established at 95%",
    }.get(best.direction, best.direction)
    sentence = (
        f"{attack}: {best.score} has the strongest rank correlation with PSNR "
        f"(Spearman ρ = {rho.value:+.2f}, {ci}, n = {best.n}; SPEC: "
        f"{directions[best.score].replace('_', ' ')}); {verdict}."
    )
    return {
        "best_score": best.score,
        "metric": PRIMARY_METRIC,
        "spearman": rho.value,
        "ci95": list(rho.ci95) if rho.ci95 else None,
        "direction": best.direction,
        "directions_held": sorted(r.score for r in defined if r.direction == "held"),
        "directions_reversed": sorted(r.score for r in defined if r.direction == "reversed"),
        "sentence": sentence,
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
        risk_score: score that orders the selection; default ``i2f`` when given, else
            the first score in SPEC order.
        directions: risk direction per score (default: SPEC).
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
        if name not in SCORES:
            raise ValueError(f"unknown score {name!r}; choose from: {', '.join(ALL_SCORES)}")
        if values.shape[0] != n_all:
            raise ValueError(f"score {name!r} has {values.shape[0]} values for {n_all} inputs")
    if not scores:
        raise ValueError("validate needs at least one score")
    dirs = {name: SCORES[name].direction for name in scores} | dict(directions or {})
    order = [s for s in ALL_SCORES if s in scores]
    risk_name = risk_score or ("i2f" if "i2f" in scores else order[0])
    if risk_name not in scores:
        raise ValueError(f"risk score {risk_name!r} is not among the given scores")
    sign = 1.0 if dirs[risk_name] == "higher_is_riskier" else -1.0
    risk = sign * scores[risk_name].double().cpu()
    if isinstance(selection, str):
        if selection != "stratified":
            raise ValueError("selection must be 'stratified' or a list of indices")
        idx = stratified_indices(risk, n_samples, seed)
        selection_desc: dict[str, Any] = {"method": "stratified", "by": risk_name}
    else:
        idx = torch.as_tensor(list(selection), dtype=torch.long)
        if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= n_all:
            raise ValueError(f"indices must be non-empty and in [0, {n_all - 1}]")
        idx = idx[torch.argsort(-risk[idx], stable=True)]
        selection_desc = {"method": "indices"}

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
        rec = torch.cat([p.reconstruction for p in parts])
        recon[a] = space.to_unit(rec).clamp(0, 1).cpu()
        att_labels[a] = torch.cat([p.labels for p in parts]).cpu()
        losses[a] = torch.cat([p.matching_loss for p in parts]).double().cpu()
        quality[a], qnotes = quality_metrics(recon[a], originals, use_lpips=use_lpips)
        notes.extend(n for n in qnotes if n not in notes)

    sel_scores = {s: scores[s].double().cpu()[idx] for s in order}
    records = []
    for a in names:
        for s in order:
            ok = torch.isfinite(sel_scores[s])  # a non-finite score leaves its sample out
            if not bool(ok.all()):
                note = f"{s}: {int((~ok).sum())} validated samples have no finite value"
                if note not in notes:
                    notes.append(note)
            for m in quality[a]:
                records.append(
                    agreement(
                        sel_scores[s][ok],
                        quality[a][m][ok],
                        score_name=s,
                        attack=a,
                        metric=m,
                        score_direction=dirs[s],
                        metric_direction=METRIC_DIRECTIONS[m],
                        n_resamples=n_resamples,
                        seed=seed,
                    )
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
    all_ids = list(ids) if ids is not None else [str(i) for i in range(n_all)]
    return ValidationResult(
        indices=idx,
        ids=[all_ids[int(i)] for i in idx],
        labels=y.cpu(),
        risk_score=risk_name,
        directions={s: dirs[s] for s in order},
        scores=sel_scores,
        originals=originals,
        reconstructions=recon,
        attack_labels=att_labels,
        matching_loss=losses,
        quality=quality,
        agreement=records,
        summary={a: _summarise(a, records, dirs) for a in names},
        config=config,
        notes=notes,
        seconds=seconds,
    )


def scores_from_report(report: dict[str, Any]) -> dict[str, Any]:
    """Per-sample scores of a scan report (``Report.to_dict()`` or its JSON).

    Args:
        report: the scan report; ``samples`` carry ``index``, ``id``, ``label`` and
            ``scores`` (``None`` for a missing value), ``risk`` names the risk score.

    Returns:
        ``{"positions": [N] int64, "ids": list[str], "labels": [N] int64,
        "scores": name → [N] float64 (NaN where missing), "risk_score": str | None,
        "directions": name → direction}``.

    Raises:
        ValueError: the report has no samples or no scores.
    """
    samples = report.get("samples") or []
    if not samples:
        raise ValueError("the scan report has no samples")
    names = [n for n in ALL_SCORES if any(n in (s.get("scores") or {}) for s in samples)]
    if not names:
        raise ValueError("the scan report's samples carry no scores")
    values = {
        n: torch.tensor(
            [np.nan if s["scores"].get(n) is None else float(s["scores"][n]) for s in samples],
            dtype=torch.float64,
        )
        for n in names
    }
    overrides = ((report.get("config") or {}).get("scores") or {}).get("directions") or {}
    return {
        "positions": torch.tensor([int(s["index"]) for s in samples], dtype=torch.long),
        "ids": [str(s.get("id", s["index"])) for s in samples],
        "labels": torch.tensor([int(s["label"]) for s in samples], dtype=torch.long),
        "scores": values,
        "risk_score": (report.get("risk") or {}).get("score"),
        "directions": {n: overrides.get(n, SCORES[n].direction) for n in names},
    }


def validate_report(
    model: nn.Module,
    dataset: Any,
    report: dict[str, Any],
    *,
    n_samples: int = 32,
    indices: Sequence[int] | None = None,
    risk_score: str | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> ValidationResult:
    """``validate`` with the scores of an existing scan report instead of rescoring.

    Only the selected samples are read from ``dataset``.

    Args:
        model: the scanned model.
        dataset: the scanned (map-style) dataset, yielding ``(x, y)``; the report's
            ``index`` is a position in it.
        report: the scan report (see :func:`scores_from_report`).
        n_samples: samples to attack, stratified over the report's risk ranking.
        indices: dataset positions to attack instead (must be in the report).
        risk_score: orders the selection (default: the report's risk score).
        seed: as in :func:`validate`.
        **kwargs: passed to :func:`validate` (attacks, defense, budget, space, ...).

    Returns:
        The result; ``indices`` are positions in ``dataset``.
    """
    parsed = scores_from_report(report)
    positions: Tensor = parsed["positions"]
    risk_name = risk_score or parsed["risk_score"] or next(iter(parsed["scores"]))
    if risk_name not in parsed["scores"]:
        raise ValueError(f"the scan report has no score {risk_name!r}")
    directions = parsed["directions"] | dict(kwargs.pop("directions", None) or {})
    if indices is not None:
        where = {int(p): k for k, p in enumerate(positions.tolist())}
        missing = [i for i in indices if int(i) not in where]
        if missing:
            raise ValueError(f"sample {missing[0]} is not in the scan report")
        rows = torch.tensor([where[int(i)] for i in indices], dtype=torch.long)
    else:
        sign = 1.0 if directions[risk_name] == "higher_is_riskier" else -1.0
        rows = stratified_indices(sign * parsed["scores"][risk_name], n_samples, seed)
    items = [dataset[int(positions[r])] for r in rows]
    inputs = torch.stack([torch.as_tensor(x, dtype=torch.float32) for x, _ in items])
    labels = torch.tensor([int(y) for _, y in items], dtype=torch.long)
    result = validate(
        model,
        inputs,
        labels,
        {n: v[rows] for n, v in parsed["scores"].items()},
        selection=list(range(len(rows))),
        risk_score=risk_name,
        directions=directions,
        ids=[parsed["ids"][int(r)] for r in rows],
        seed=seed,
        **kwargs,
    )
    result.indices = positions[rows][result.indices]
    result.config["selection"] = (
        {"method": "indices"} if indices is not None else {"method": "stratified", "by": risk_name}
    )
    result.config["scores_from"] = "scan report"
    return result


def _score_report(inputs: Any, options: Any, progress: ProgressFn | None) -> dict[str, Any]:
    """Score ``inputs`` (an ``api.Inputs``) with the engine, as a minimal scan report."""
    from leakaudit.scores.engine import score_samples

    total, done = len(inputs.ids), 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    res = score_samples(inputs.model, inputs.dataset, options, progress=advance)
    samples = [
        {
            "index": int(i),
            "id": inputs.ids[int(i)],
            "label": int(res.labels[k]),
            "scores": {n: float(v[k]) for n, v in res.scores.items()},
        }
        for k, i in enumerate(res.indices.tolist())
    ]
    return {"samples": samples}


def validate_config(
    config: Any,
    *,
    report: dict[str, Any] | None = None,
    attacks: Sequence[str] = ("dlg", "ig"),
    budget: str = "standard",
    n_samples: int = 32,
    indices: Sequence[int] | None = None,
    risk_score: str | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: ProgressFn | None = None,
    scan_progress: ProgressFn | None = None,
) -> ValidationResult:
    """Validate the model and data of a scan configuration.

    The model and data are loaded as ``leakaudit scan`` loads them; the scores come from
    ``report`` when given (no rescoring), else from a fresh scan. The attacker sees
    the configured defence; pixels are un-normalised with the data's ``mean``/``std``.

    Args:
        config: a :class:`leakaudit.config.ScanConfig`.
        report: a scan report of the same configuration, to reuse its scores.
        attacks: attack names.
        budget: ``fast``, ``standard`` or ``paper``.
        n_samples: samples to attack (stratified over the risk ranking).
        indices: dataset positions to attack instead.
        risk_score: orders the selection (default: the scan's risk score).
        seed: seeds selection, defence noise, attacks and bootstrap.
        device: ``auto``, ``cpu`` or ``cuda``.
        progress: attack progress ``(done, total)``.
        scan_progress: scan progress when scoring afresh.

    Returns:
        The :class:`ValidationResult`.

    Raises:
        ConfigError: a bad attack, budget, score or index (the message names it).
    """
    from leakaudit import api
    from leakaudit.defenses import make_defense
    from leakaudit.errors import ConfigError
    from leakaudit.scores.engine import resolve_device

    try:
        check_attacks(list(attacks))
        check_budget(budget)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    dev = resolve_device(device)
    if report is not None and config.model.checkpoint is None:
        raise ConfigError(
            "--report: the scanned model has no checkpoint, so its random weights cannot be "
            "rebuilt; validate would attack a different model (omit --report to rescore)"
        )
    inputs = api.load_inputs(config)
    scored_now = report is None
    if report is None:
        report = _score_report(inputs, api.score_options(config), scan_progress)
        report["risk"] = {"score": config.scores.risk_score}
    data = config.data
    space = (
        InputSpace.from_normalization(data.mean, data.std or [1.0] * len(data.mean))
        if data.mean is not None
        else InputSpace()
    )
    try:
        result = validate_report(
            inputs.model,
            inputs.dataset,
            report,
            n_samples=n_samples,
            indices=indices,
            risk_score=risk_score,
            seed=seed,
            attacks=attacks,
            budget=budget,
            defense=make_defense(config.defense.kind, **config.defense.params),
            space=space,
            directions=dict(config.scores.directions),
            device=dev,
            progress=progress,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if scored_now:
        result.config["scores_from"] = "scored now"
    return result
