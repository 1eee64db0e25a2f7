"""What ``validate`` returns: :class:`ValidationResult`, its JSON form, and the summary
of which score predicts reconstruction quality best."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from leakaudit.metrics.agreement import Agreement

#: The metric the summary ranks scores by.
PRIMARY_METRIC = "psnr"


def _finite(value: Tensor | float) -> float | None:
    """A float for JSON, ``None`` when not finite."""
    v = float(value)
    return v if np.isfinite(v) else None


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
        batch_size: B when the server saw client batches' gradients, else ``None``.
        batch: ``[n]`` int64 the client batch of each sample (the loader's batch number
            when known), when ``batch_size`` is set.
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
    batch_size: int | None = None
    batch: Tensor | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report's ``validation`` section (plain JSON types; undefined → ``None``)."""
        samples = []
        for j in range(len(self.indices)):
            samples.append(
                {
                    "index": int(self.indices[j]),
                    "id": self.ids[j],
                    "label": int(self.labels[j]),
                    **({} if self.batch is None else {"batch": int(self.batch[j])}),
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
            **self._batches(),
            "samples": samples,
            "agreement": [a.to_dict() for a in self.agreement],
            "summary": self.summary,
            "notes": list(self.notes),
            "seconds": dict(self.seconds),
        }

    def _batches(self) -> dict[str, Any]:
        """``batch_size`` and one group per client batch: its samples and, per attack,
        the mean, smallest and largest PSNR of its paired reconstructions and its
        matching loss; nothing when the server saw single samples."""
        if self.batch is None:
            return {}
        groups = []
        for k in dict.fromkeys(self.batch.tolist()):
            rows = (self.batch == k).nonzero().flatten()
            attacks = {}
            for a, q in self.quality.items():
                db = q[PRIMARY_METRIC][rows]
                attacks[a] = {
                    "psnr_mean": _finite(db.mean()),
                    "psnr_min": _finite(db.min()),
                    "psnr_max": _finite(db.max()),
                    "matching_loss": _finite(self.matching_loss[a][rows[0]]),
                }
            members = rows.tolist()
            groups.append(
                {
                    "batch": int(k),
                    "indices": [int(self.indices[j]) for j in members],
                    "ids": [self.ids[j] for j in members],
                    "attacks": attacks,
                }
            )
        return {"batch_size": self.batch_size, "batches": groups}


def summarise(attack: str, records: list[Agreement], directions: dict[str, str]) -> dict[str, Any]:
    """Which score's Spearman ρ with :data:`PRIMARY_METRIC` is strongest for ``attack``,
    whether its assumed risk direction held, and a sentence saying so."""
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
        "held": "its assumed risk direction held",
        "reversed": "its assumed risk direction was REVERSED (the opposite ordering predicts)",
        "inconclusive": "the sign of the effect is not established at 95%",
    }.get(best.direction, best.direction)
    sentence = (
        f"{attack}: {best.score} has the strongest rank correlation with PSNR "
        f"(Spearman ρ = {rho.value:+.2f}, {ci}, n = {best.n}; assumed: "
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
