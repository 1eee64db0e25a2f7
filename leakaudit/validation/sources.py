"""Where ``validate`` gets its scores: a :class:`ScoreTable` read from a scan report (JSON
data, never trusted to run code) or made from the engine's :class:`ScoreResult`.

:func:`leakaudit.api.validate` loads the model and data and calls :func:`validate_scores`;
this module never loads inputs or scores itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from leakaudit.direction import orient
from leakaudit.errors import InputError
from leakaudit.scores.batching import Batching
from leakaudit.scores.names import ALL_SCORES
from leakaudit.scores.risk import resolve_risk
from leakaudit.validation.batched import batch_rows
from leakaudit.validation.result import ValidationResult
from leakaudit.validation.run import validate
from leakaudit.validation.selection import stratified_indices

if TYPE_CHECKING:
    from leakaudit.config import ScanConfig
    from leakaudit.scores.options import ScoreResult

#: :attr:`ScoreTable.origin` of scores read from a scan report.
FROM_REPORT = "scan report"
#: :attr:`ScoreTable.origin` of scores computed for this validation.
SCORED_NOW = "scored now"


@dataclass
class ScoreTable:
    """Per-sample scores of a scanned dataset, the input that ``validate`` selects from.

    Attributes:
        positions: ``[N]`` int64 positions of the scored samples in the dataset.
        ids: ``N`` sample ids.
        labels: ``[N]`` int64 labels.
        scores: score name → ``[N]`` float64 (NaN where missing).
        risk_score: the scan's risk score, if it named one.
        directions: score name → risk direction.
        origin: :data:`FROM_REPORT` or :data:`SCORED_NOW` (the result's ``scores_from``).
    """

    positions: Tensor
    ids: list[str]
    labels: Tensor
    scores: dict[str, Tensor]
    risk_score: str | None
    directions: dict[str, str]
    origin: str = FROM_REPORT


def scores_from_report(report: Mapping[str, Any]) -> ScoreTable:
    """Per-sample scores of a scan report (``Report.to_dict()`` or its JSON).

    Args:
        report: the scan report; ``samples`` carry ``index``, ``id``, ``label`` and
            ``scores`` (``None`` for a missing value), ``risk`` names the risk score.

    Returns:
        The :class:`ScoreTable`; directions are the report's ``config.scores.directions``
        over each score's assumed direction.

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
    return ScoreTable(
        positions=torch.tensor([int(s["index"]) for s in samples], dtype=torch.long),
        ids=[str(s.get("id", s["index"])) for s in samples],
        labels=torch.tensor([int(s["label"]) for s in samples], dtype=torch.long),
        scores=values,
        risk_score=_report_risk_score(report, names),
        directions=dict(resolve_risk(None, overrides, names).only(names)),
    )


def _report_risk_score(report: Mapping[str, Any], names: list[str]) -> str | None:
    """The report's risk score, if it is one of ``names``. A calibrated report ranks by
    predicted PSNR (``risk.score: psnr``), which is no score: its configured risk score
    (the uncalibrated ranking) stands in."""
    risk = (report.get("risk") or {}).get("score")
    if risk in names or not (report.get("risk") or {}).get("calibrated"):
        return risk
    configured = ((report.get("config") or {}).get("scores") or {}).get("risk_score")
    return configured if configured in names else None


def scores_from_result(
    result: ScoreResult, ids: Sequence[str], risk_score: str | None = None
) -> ScoreTable:
    """The engine's scores as a :class:`ScoreTable`, without a detour through JSON.

    Args:
        result: :func:`leakaudit.scores.engine.score_samples`'s result.
        ids: the dataset's sample ids, by position.
        risk_score: the scan's risk score.
    """
    return ScoreTable(
        positions=result.indices.long(),
        ids=[str(ids[int(i)]) for i in result.indices.tolist()],
        labels=result.labels.long(),
        scores={n: v.double().cpu() for n, v in result.scores.items()},
        risk_score=risk_score,
        directions=dict(resolve_risk(None, None, list(result.scores)).only(result.scores)),
        origin=SCORED_NOW,
    )


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
    from leakaudit.config.limits import check_report_model
    from leakaudit.errors import ConfigError
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
    check_sample_indices(dict(report), len(dataset))
    return validate_scores(
        model,
        dataset,
        scores_from_report(report),
        n_samples=n_samples,
        indices=indices,
        risk_score=risk_score,
        seed=seed,
        **kwargs,
    )


def validate_scores(
    model: nn.Module,
    dataset: Any,
    table: ScoreTable,
    *,
    n_samples: int = 32,
    indices: Sequence[int] | None = None,
    risk_score: str | None = None,
    seed: int = 0,
    batching: Batching | None = None,
    **kwargs: Any,
) -> ValidationResult:
    """``validate`` with the scores of ``table``; only the selected samples are read.

    Args:
        model: the scanned model.
        dataset: the scanned (map-style) dataset, yielding ``(x, y)``; the table's
            ``positions`` are positions in it.
        table: the samples' scores (:func:`scores_from_report`, :func:`scores_from_result`).
        n_samples: samples to attack, stratified over the table's risk ranking.
        indices: dataset positions to attack instead (must be in the table).
        risk_score: orders the selection (default: the table's risk score, else its first).
        seed: as in :func:`validate`.
        batching: the client's: attack its whole batches' gradients (:func:`batch_rows`).
        **kwargs: passed to :func:`validate` (attacks, defense, budget, space,
            directions over the table's, ...).

    Returns: the result; ``indices`` are positions in ``dataset``.
    """
    source = "the scan report" if table.origin == FROM_REPORT else "the scan"
    risk_name = risk_score or table.risk_score
    if risk_name is not None and risk_name not in table.scores:
        raise ValueError(f"{source} has no score {risk_name!r}")
    directions = table.directions | dict(kwargs.pop("directions", None) or {})
    risk = resolve_risk(risk_name, directions, available=table.scores)
    risky = orient(table.scores[risk.score], risk.direction)
    kwargs["client_batch"] = None if batching is None else batching.size
    rows, numbers = _rows(table, risky, batching, len(dataset), n_samples, indices, seed)
    items = [dataset[int(table.positions[r])] for r in rows]
    inputs = torch.stack([torch.as_tensor(x, dtype=torch.float32) for x, _ in items])
    labels = torch.tensor([int(y) for _, y in items], dtype=torch.long)
    result = validate(
        model,
        inputs,
        labels,
        {n: v[rows] for n, v in table.scores.items()},
        selection=list(range(len(rows))),
        risk=risk,
        ids=[table.ids[int(r)] for r in rows],
        seed=seed,
        **kwargs,
    )
    if numbers is not None:
        result.batch = numbers[result.indices]
    result.indices = table.positions[rows][result.indices]
    result.config["selection"] = (
        {"method": "indices"} if indices is not None else {"method": "stratified", "by": risk.score}
    ) | ({} if numbers is None else {"unit": "batch", "batch_size": kwargs["client_batch"]})
    result.config["scores_from"] = table.origin
    return result


def _rows(
    table: ScoreTable,
    risky: Tensor,
    batching: Batching | None,
    size: int,
    n_samples: int,
    indices: Sequence[int] | None,
    seed: int,
) -> tuple[Tensor, Tensor | None]:
    """The rows of ``table`` to attack, and their client batch numbers (``None`` without
    ``batching``): whole batches (:func:`batch_rows`), the rows of ``indices``, or
    ``n_samples`` stratified over the oriented risk ``risky``."""
    if batching is not None:
        return batch_rows(
            table.positions, risky, batching, size, n_samples=n_samples, indices=indices, seed=seed
        )
    if indices is not None:
        source = "the scan report" if table.origin == FROM_REPORT else "the scan"
        return _rows_of(table.positions, indices, source), None
    return stratified_indices(risky, n_samples, seed), None


def _rows_of(positions: Tensor, indices: Sequence[int], source: str) -> Tensor:
    """The rows of ``positions`` that hold the dataset positions ``indices``, ``[n]``.

    Raises:
        ValueError: naming the first position that is not in ``source``.
    """
    where = {int(p): k for k, p in enumerate(positions.tolist())}
    missing = [i for i in indices if int(i) not in where]
    if missing:
        raise ValueError(f"sample {missing[0]} is not in {source}")
    return torch.tensor([where[int(i)] for i in indices], dtype=torch.long)


def check_sample_indices(report: dict[str, Any], size: int) -> None:
    """Refuse report samples whose ``index`` is not a position in a dataset of ``size``.

    Called where the dataset is known (``validate`` with a report): a crafted index must
    not attack another sample's pixels (Python would read ``-1`` as the last one).

    Raises:
        InputError: the first bad index, or a duplicate.
    """
    seen: set[int] = set()
    for i, sample in enumerate(report.get("samples") or []):
        index = sample.get("index") if isinstance(sample, dict) else None
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
            raise InputError(
                f"--report: sample index {index!r} ($.samples[{i}]) is not a position in "
                f"the dataset, which has {size} samples (the report is of other data?)"
            )
        if index in seen:
            raise InputError(f"--report: sample index {index} ($.samples[{i}]) is a duplicate")
        seen.add(index)
