"""Assemble a :class:`Report` from the engine's :class:`ScoreResult` and the scan's
context: ranks, percentiles, distributions, the σ what-if and the gate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch

import leakaudit
from leakaudit.calibration.apply import PSNR_RULE, Prediction, predict
from leakaudit.calibration.document import Calibration
from leakaudit.config import ScanConfig, config_to_dict
from leakaudit.direction import Direction
from leakaudit.gate import Baseline, GateResult, evaluate_gate, expired_warning
from leakaudit.report.document import Report, SampleRecord
from leakaudit.report.ranking import distribution, risk_percentiles, risk_ranks
from leakaudit.scores.i2f import sigma_needed
from leakaudit.scores.names import I2F
from leakaudit.scores.options import ScoreResult


def _item(t: torch.Tensor) -> Any:
    v = t.item()
    return bool(v) if t.dtype == torch.bool else v


def _whatif(result: ScoreResult, cfg: ScanConfig, n: int) -> tuple[dict[str, Any], np.ndarray]:
    tau = cfg.defense.target_error
    unit = result.diagnostics.get("i2f_unit_sigma")
    if unit is None:
        return {"target_error": tau, "available": False}, np.full(n, np.nan)
    sig = sigma_needed(unit.double().numpy(), tau)
    finite = sig[np.isfinite(sig)]
    below = None
    if I2F in result.scores:
        i2f = result.scores[I2F].double().numpy()
        below = int(np.sum(i2f < tau))
    whatif = {
        "target_error": tau,
        "available": True,
        "sigma_dataset": float(finite.max()) if finite.size else None,
        "sigma_median": float(np.median(finite)) if finite.size else None,
        "below_target_under_defense": below,
    }
    return whatif, sig


def build_report(
    result: ScoreResult,
    *,
    ids: Sequence[str],
    config: ScanConfig,
    model_info: dict[str, Any],
    dataset_info: dict[str, Any],
    seconds: float,
    resumed: int = 0,
    warnings: Sequence[str] = (),
    calibration: Calibration | None = None,
    content: Sequence[str] | None = None,
    baseline: Baseline | None = None,
    selection: dict[str, Any] | None = None,
    batches: dict[str, Any] | None = None,
) -> Report:
    """Rank and summarise ``result`` (rows in dataset order) into a :class:`Report`.

    Args:
        result: per-sample scores and diagnostics for all ``N`` samples, sorted by index.
        ids: ``[N]`` sample ids, aligned with ``result.indices``.
        config: the scan's configuration (copied into the report).
        model_info: model description (name, parameters, checkpoint with SHA-256).
        dataset_info: dataset description (kind, size, classes, input shape).
        seconds: wall time of the scan.
        resumed, warnings: samples taken from partial results; lines to carry over.
        calibration: when given, every sample gets its predicted PSNR and the ranking
            follows the calibrated rule (see docs/calibration.md).
        content: ``[N]`` content hashes (SHA-256 hex), for allowlists and baselines.
        baseline: a previous report: only newly offending samples count.
        selection: the report's ``scores`` section (what was computed, and why).
        batches: a batch scan's batching (``summary.batches``); None for a per-sample scan.
    """
    n = int(result.indices.numel())
    score_np = {k: v.double().numpy() for k, v in result.scores.items()}
    ranking = _Ranking.of(config, score_np, calibration)
    whatif, sig = _whatif(result, config, n)
    samples = [_record(k, result, ids, score_np, ranking, sig, content) for k in range(n)]
    gate = _gate(ids, config, ranking, content, baseline)
    return Report(
        tool={"name": "leakaudit", "version": leakaudit.__version__},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        config=config_to_dict(config),
        model=model_info,
        dataset=dataset_info,
        risk=ranking.section,
        defense={"kind": config.defense.kind, **config.defense.params},
        whatif=whatif,
        samples=samples,
        summary=_summary(result, ids, config, score_np, seconds, resumed, batches),
        gate=gate,
        warnings=[*warnings, *map(expired_warning, gate.expired_allowlist)],
        scores=selection,
    )


def _gate(
    ids: Sequence[str],
    config: ScanConfig,
    ranking: _Ranking,
    content: Sequence[str] | None,
    baseline: Baseline | None,
) -> GateResult:
    """The gate's verdict on the ranking's gated values."""
    return evaluate_gate(
        [str(i) for i in ids],
        ranking.gated,
        config.gate.rules,
        config.gate.allowlist,
        ranking.directions,
        content=content,
        baseline=baseline,
    )


def _record(
    k: int,
    result: ScoreResult,
    ids: Sequence[str],
    scores: dict[str, np.ndarray],
    ranking: _Ranking,
    sigma: np.ndarray,
    content: Sequence[str] | None,
) -> SampleRecord:
    """Row ``k`` of the report."""
    return SampleRecord(
        index=int(result.indices[k]),
        id=str(ids[k]),
        label=int(result.labels[k]),
        rank=int(ranking.ranks[k]),
        percentile=float(ranking.percentiles[k]),
        scores={name: float(v[k]) for name, v in scores.items()},
        diagnostics={name: _item(t[k]) for name, t in result.diagnostics.items()},
        sigma_needed=float(sigma[k]),
        content_sha256=content[k] if content is not None else None,
        **ranking.psnr(k),
    )


@dataclass
class _Ranking:
    """How samples are ranked: by the risk score, or by a calibration's rule."""

    ranks: np.ndarray
    percentiles: np.ndarray
    section: dict[str, Any]
    gated: dict[str, np.ndarray]
    directions: dict[str, Direction]
    prediction: Prediction | None = None

    @classmethod
    def of(
        cls, config: ScanConfig, scores: dict[str, np.ndarray], calibration: Calibration | None
    ) -> _Ranking:
        risk = config.scores.risk()
        directions = dict(risk.directions)
        if calibration is None:
            values, direction = scores[risk.score], risk.direction
            section = {**risk.to_dict(), "calibrated": False}
            return cls(
                risk_ranks(values, direction),
                risk_percentiles(values, direction),
                section,
                scores,
                directions,
            )
        pred = predict(calibration, scores)
        up: Direction = "higher_is_riskier"
        section = {
            "score": PSNR_RULE,
            "direction": up,
            "direction_source": "calibration",
            "calibrated": True,
            "calibration": pred.summary,
        }
        return cls(
            risk_ranks(pred.feature, up),
            risk_percentiles(pred.feature, up),
            section,
            {**scores, PSNR_RULE: pred.psnr_db},
            {**directions, PSNR_RULE: up},
            pred,
        )

    def psnr(self, k: int) -> dict[str, Any]:
        """Sample ``k``'s predicted PSNR fields (none without a calibration)."""
        if self.prediction is None:
            return {}
        p = self.prediction
        return {
            "predicted_psnr_db": float(p.psnr_db[k]),
            "psnr_interval_db": [float(p.low[k]), float(p.high[k])],
        }


def _one_process(result: ScoreResult, n: int, resumed: int) -> dict[str, Any]:
    """``summary.distributed`` of a scan in one process (a sharded scan replaces it:
    :mod:`leakaudit.distributed`)."""
    scored = n - resumed
    rate = scored / result.seconds if result.seconds > 0 else None
    rank = {"rank": 0, "samples": scored, "resumed": resumed, "seconds": result.seconds}
    return {
        "world_size": 1,
        "process_group": None,
        "ranks": [{**rank, "samples_per_second": rate}],
    }


def _summary(
    result: ScoreResult,
    ids: Sequence[str],
    config: ScanConfig,
    scores: dict[str, np.ndarray],
    seconds: float,
    resumed: int,
    batches: dict[str, Any] | None,
) -> dict[str, Any]:
    n = len(ids)
    converged = result.diagnostics.get("converged", torch.ones(n, dtype=torch.bool))
    return {
        "num_samples": n,
        "scores": {name: distribution(v) for name, v in scores.items()},
        "device": result.device,
        "backend": result.backend,
        "dtype": config.scores.dtype,
        "seconds": seconds,
        "samples_per_second": (n - resumed) / seconds if seconds > 0 else None,
        "resumed_samples": resumed,
        "non_converged": [str(ids[int(k)]) for k in np.flatnonzero(~converged.numpy())],
        "distributed": _one_process(result, n, resumed),
        **({"batches": batches} if batches is not None else {}),
    }
