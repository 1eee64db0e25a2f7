"""The versioned scan report: what every output format renders.

``Report.to_dict()`` is the JSON document described in ``docs/report-schema.md`` and
checked against :data:`leakaudit.report.schema.REPORT_SCHEMA`. Non-finite floats
become ``null``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from leakaudit.gate import GateResult

#: Bumped on any incompatible change of the JSON layout (major) or on additions (minor).
SCHEMA_VERSION = "1.3"


def clean(value: Any) -> Any:
    """``value`` as strict JSON data: non-finite floats → ``None``, tuples → lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


@dataclass
class SampleRecord:
    """One sample's numbers.

    Attributes:
        index: position in the (subset) dataset that was scanned.
        id: stable sample id (file path, or ``"<index>"`` for tensor data).
        label: class label.
        rank: 1 = riskiest under the report's risk score.
        percentile: 100 = riskiest; ``None`` when the risk score is not finite.
        scores: score name → value.
        diagnostics: engine diagnostics (``converged``, residuals, standard errors).
        sigma_needed: Gaussian σ for which the I²F-predicted reconstruction error
            reaches the target τ (``None`` without I²F).
        predicted_psnr_db: the PSNR the calibrated attack is predicted to reach on this
            sample (``None`` without ``--calibration``).
        psnr_interval_db: ``[low, high]`` prediction interval of ``predicted_psnr_db``.
        content_sha256: SHA-256 (hex) of the sample's input tensor and label, as scanned
            (:func:`leakaudit.resume.sample_digest`): an id that survives renames.
    """

    index: int
    id: str
    label: int
    rank: int
    percentile: float | None
    scores: dict[str, float | None]
    diagnostics: dict[str, Any]
    sigma_needed: float | None = None
    predicted_psnr_db: float | None = None
    psnr_interval_db: list[float] | None = None
    content_sha256: str | None = None


@dataclass
class Report:
    """A scan's result. Sections mirror the JSON keys (see docs/report-schema.md)."""

    tool: dict[str, str]
    created: str
    config: dict[str, Any]
    model: dict[str, Any]
    dataset: dict[str, Any]
    risk: dict[str, Any]
    defense: dict[str, Any]
    whatif: dict[str, Any]
    samples: list[SampleRecord]
    summary: dict[str, Any]
    gate: GateResult
    schema_version: str = SCHEMA_VERSION
    warnings: list[str] = field(default_factory=list)
    #: Where relative paths are relative to (see :mod:`leakaudit.report.paths`) and
    #: whether ids and paths were redacted.
    paths: dict[str, Any] = field(
        default_factory=lambda: {"base": ".", "base_from": "cwd", "redacted": False}
    )

    @property
    def calibrated(self) -> bool:
        """Whether the ranking is a calibration's predicted PSNR."""
        return bool(self.risk.get("calibrated"))

    def ranking_basis(self) -> str:
        """One sentence: what the ranking rests on (calibrated, or not and why that matters)."""
        if self.calibrated:
            c = self.risk.get("calibration") or {}
            attack = c.get("attack") or {}
            rho = c.get("cv_spearman")
            return (
                f"calibrated: ranked by the PSNR that {', '.join(attack.get('attacks', []))} "
                f"({attack.get('budget')} budget) is predicted to reach, rule {c.get('rule')}"
                + (f", held-out Spearman ρ {rho:+.2f}" if rho is not None else "")
            )
        way = "higher" if self.risk.get("direction") == "higher_is_riskier" else "lower"
        return (
            f"uncalibrated: ranked by {self.risk.get('score')} ({way} is riskier), which "
            "may not track a real attack on a trained model; run `leakaudit calibrate` "
            "(docs/calibration.md)"
        )

    def ranked(self) -> list[SampleRecord]:
        """Samples riskiest first."""
        return sorted(self.samples, key=lambda s: s.rank)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (strict JSON: no NaN)."""
        return clean(
            {
                "schema_version": self.schema_version,
                "tool": self.tool,
                "created": self.created,
                "config": self.config,
                "model": self.model,
                "dataset": self.dataset,
                "risk": self.risk,
                "defense": self.defense,
                "whatif": self.whatif,
                "samples": [vars(s) for s in self.samples],
                "summary": self.summary,
                "gate": self.gate.to_dict(),
                "warnings": self.warnings,
                "paths": self.paths,
            }
        )
