"""``validate`` with the scores of an earlier scan: read them from its report, or from a
scan configuration (loading the model and data as ``leakaudit scan`` does, and scoring
afresh when there is no report)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from leakaudit.attacks import InputSpace, check_attacks
from leakaudit.attacks.base import check_budget
from leakaudit.report.reading import check_sample_indices
from leakaudit.scores.names import ALL_SCORES, SCORES
from leakaudit.validation.result import ValidationResult
from leakaudit.validation.run import ProgressFn, validate
from leakaudit.validation.selection import oriented_risk, stratified_indices

if TYPE_CHECKING:
    from leakaudit.config import ScanConfig


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


def report_config(stored: ScanConfig, flags: Mapping[str, Any]) -> ScanConfig:
    """The scan configuration a report carries, read as data, with the user's ``flags``.

    A report can be crafted, so it never decides to run code: its ``model.trust_checkpoint``
    and a ``model.name`` that is a model factory (``file.py:fn``, ``module:fn``) count only
    when ``flags`` (this run's own choices) give them again; otherwise the report is
    refused. Everything else (architecture, data, scores, defence) is taken from it.

    Args:
        stored: the configuration the report stores (its paths resolved, see
            :func:`leakaudit.report.paths.config_from_report`).
        flags: dotted config key → the user's value (``None``: not given), as
            :func:`leakaudit.cli.options.flag_overrides` makes them.

    Returns:
        The :class:`leakaudit.config.ScanConfig` to validate.

    Raises:
        ConfigError: a bad configuration, or one that asks for trust or code (the
            message names the flag that grants it).
    """
    from leakaudit.config import with_overrides
    from leakaudit.errors import ConfigError
    from leakaudit.io.guards import check_report_model
    from leakaudit.models.factory import is_factory_spec

    asked = stored
    flags = {k: v for k, v in flags.items() if v is not None}
    cfg = with_overrides(asked, {"model.trust_checkpoint": False, **flags})
    if asked.model.trust_checkpoint and not cfg.model.trust_checkpoint:
        raise ConfigError(
            f"the report asks to unpickle its checkpoint {cfg.model.checkpoint} without "
            "restrictions; a report cannot grant trust: pass --trust-checkpoint yourself "
            "if you trust that file"
        )
    name = cfg.model.name
    if is_factory_spec(name) and flags.get("model.name") != name:
        raise ConfigError(
            f"the report asks for model factory {name!r}; a report cannot load code: "
            f"pass --model {name} yourself if you trust it"
        )
    check_report_model(cfg.model)
    return cfg


def check_report_checkpoint(report: dict[str, Any], path: str | Path, sha256: str | None) -> None:
    """Refuse to validate with a checkpoint other than the one the report scanned.

    The report's scores belong to the weights it scanned; attacking other weights would
    measure a different model (or one swapped in on purpose).

    Args:
        report: the scan report; ``model.checkpoint.sha256`` records the scanned file.
        path: the checkpoint about to be (or just) loaded.
        sha256: its SHA-256, or ``None`` to hash the file now.

    Raises:
        InputError: the report records no SHA-256, or the file's differs.
    """
    from leakaudit.errors import InputError
    from leakaudit.io.checkpoints import sha256_file

    model = report.get("model")
    record = model.get("checkpoint") if isinstance(model, dict) else None
    recorded = record.get("sha256") if isinstance(record, dict) else None
    if not isinstance(recorded, str):
        raise InputError(
            f"--report: the report records no SHA-256 of its checkpoint, so {path} cannot "
            "be checked to be the scanned file (omit --report to rescore)"
        )
    if sha256 is None:
        try:
            sha256 = sha256_file(path)
        except OSError:
            return  # loading it says what is wrong
    if sha256 != recorded.lower():
        raise InputError(
            f"checkpoint {path}: its SHA-256 {sha256[:16]}… is not the {recorded[:16]}… of "
            "the checkpoint the report scanned (the file changed, or is another one): "
            "rescan it, or omit --report to rescore"
        )


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
    check_sample_indices(report, len(dataset))
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
        risk = oriented_risk(parsed["scores"][risk_name], directions[risk_name])
        rows = stratified_indices(risk, n_samples, seed)
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
        InputError: ``report`` did not scan this checkpoint (its SHA-256 differs).
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
    if report is not None:
        check_report_checkpoint(report, config.model.checkpoint, None)
    inputs = api.load_inputs(config)
    if report is not None:  # the file may have changed while it was loaded
        check_report_checkpoint(report, config.model.checkpoint, inputs.checkpoint_sha256)
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
