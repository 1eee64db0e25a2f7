"""``calibration.json``: what a calibration learned, where, and how to apply it.

The document is versioned and self-describing: the model it was made for (architecture
signature, input shape, checkpoint SHA-256), the data's fingerprint, the attacks and
their budget, the defence, the success threshold and rate, every candidate's held-out ρ
with its interval, the chosen rule and the monotone map. A scan applies it only to a
model of the same architecture and input shape; another checkpoint of that architecture
(a later federated round) is accepted with a warning that states the calibration's age.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from leakaudit.calibration.candidates import Candidate
from leakaudit.calibration.monotone import MonotoneMap

#: Format of calibration.json (major.minor; a reader refuses another major).
CALIBRATION_VERSION = "1.0"
#: Largest calibration file read (they hold a few hundred numbers).
MAX_BYTES = 16 * 2**20


class CalibrationFileError(ValueError):
    """calibration.json is unreadable, malformed, or made for another model."""


#: Score settings that change the values a calibration's map reads: a scan must match them.
VALUE_SETTINGS = ("dtype", "damping", "damping_mode", "gm_end", "model_mode")
#: Settings that change only the accuracy of those values: a mismatch is a warning.
ACCURACY_SETTINGS = ("n_probes", "max_iter", "tol", "tol_min", "dense_max_dim")
#: Scores whose value depends on the defence (the others are the undefended gradient's).
DEFENSE_SCORES = ("i2f", "i2f_lb")


def score_settings(options: Any) -> dict[str, Any]:
    """The :class:`~leakaudit.scores.options.ScoreOptions` a calibration records."""
    out = {k: getattr(options, k) for k in (*VALUE_SETTINGS, *ACCURACY_SETTINGS)}
    out["dtype"] = str(out["dtype"]).removeprefix("torch.")
    return out


def architecture_signature(model: nn.Module) -> str:
    """SHA-256 of the module classes and the parameter and buffer names and shapes (not
    their values): a sigmoid and a ReLU variant of one shape differ."""
    parts = [f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items()]
    parts += [f"{name}={type(m).__name__}" for name, m in model.named_modules()]
    return hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()


@dataclass
class Calibration:
    """A calibration, as stored in calibration.json.

    Attributes:
        status: ``"calibrated"``, or ``"attacks_failed"`` when too few samples were
            recovered to learn anything (then ``chosen`` and ``map`` are None).
        model: ``name``, ``architecture`` (signature), ``input_shape``, ``checkpoint_sha256``.
        data: ``fingerprint`` and a description of the data.
        attack: attack names, budget and settings.
        defense: the defence the attacks faced.
        recovery: thresholds, number attacked, fraction recovered.
        candidates: every candidate's held-out ρ (best first).
        chosen: the rule; ``procedure``: the whole procedure's held-out ρ and interval.
        map: feature → PSNR map; ``reference``: the chosen scores of the calibration
            samples (rank averages need them).
        confounds: each score's ρ with image mean/contrast and its partial ρ.
    """

    status: str
    model: dict[str, Any]
    data: dict[str, Any]
    attack: dict[str, Any]
    defense: dict[str, Any]
    recovery: dict[str, Any]
    candidates: list[dict[str, Any]] = field(default_factory=list)
    chosen: Candidate | None = None
    procedure: dict[str, Any] = field(default_factory=dict)
    map: MonotoneMap | None = None
    reference: dict[str, list[float]] = field(default_factory=dict)
    confounds: dict[str, Any] = field(default_factory=dict)
    created: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    version: str = CALIBRATION_VERSION

    @property
    def usable(self) -> bool:
        """Whether it can predict PSNR."""
        return self.status == "calibrated" and self.chosen is not None and self.map is not None

    def require_usable(self) -> None:
        """Raise :class:`CalibrationFileError`, with the reason, unless it can predict."""
        if not self.usable:
            raise CalibrationFileError(
                "this calibration cannot predict: it has no score → PSNR map "
                f"({self.recovery.get('reason') or self.status}); recalibrate with a larger "
                "attack budget, or scan without --calibration"
            )

    def feature(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        """The chosen rule's feature ``[N]`` of these samples (larger is riskier), measured
        against the calibration samples.

        Raises:
            CalibrationFileError: the calibration cannot predict, or lacks a score it reads.
        """
        self.require_usable()
        assert self.chosen is not None
        missing = [s for s in self.chosen.scores if s not in scores]
        if missing:
            raise CalibrationFileError(f"the scan lacks the calibrated score {missing[0]!r}")
        ref = {k: np.asarray(v, dtype=np.float64) for k, v in self.reference.items()}
        return self.chosen.feature(scores, ref)

    def predict(self, scores: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        """Predicted PSNR (dB) and its interval ``(mid, low, high)``, ``[N]`` each."""
        feature = self.feature(scores)
        assert self.map is not None  # usable
        low, high = self.map.interval(feature)
        return self.map(feature), low, high

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "calibration_version": self.version,
            "created": self.created,
            "status": self.status,
            "model": self.model,
            "data": self.data,
            "attack": self.attack,
            "defense": self.defense,
            "recovery": self.recovery,
            "candidates": self.candidates,
            "chosen": self.chosen.to_dict() if self.chosen else None,
            "procedure": self.procedure,
            "map": self.map.to_dict() if self.map else None,
            "reference": {
                k: [x if np.isfinite(x) else None for x in v] for k, v in self.reference.items()
            },
            "confounds": self.confounds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`; :class:`CalibrationFileError` on a bad document."""
        try:
            version = str(data["calibration_version"])
            if version.split(".")[0] != CALIBRATION_VERSION.split(".")[0]:
                raise CalibrationFileError(
                    f"calibration format {version} is not supported (this leakaudit reads "
                    f"{CALIBRATION_VERSION.split('.')[0]}.x)"
                )
            chosen = Candidate.from_dict(data["chosen"]) if data.get("chosen") else None
            mapping = MonotoneMap.from_dict(data["map"]) if data.get("map") else None
            reference = {
                str(k): [float("nan") if x is None else float(x) for x in v]
                for k, v in dict(data.get("reference") or {}).items()
            }
            return cls(
                status=str(data["status"]),
                model=dict(data["model"]),
                data=dict(data["data"]),
                attack=dict(data["attack"]),
                defense=dict(data["defense"]),
                recovery=dict(data["recovery"]),
                candidates=list(data.get("candidates") or []),
                chosen=chosen,
                procedure=dict(data.get("procedure") or {}),
                map=mapping,
                reference=reference,
                confounds=dict(data.get("confounds") or {}),
                created=str(data["created"]),
                version=version,
            )
        except CalibrationFileError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CalibrationFileError(f"malformed calibration: {exc}") from None


def read_calibration(path: str | Path) -> Calibration:
    """Read calibration.json; :class:`CalibrationFileError` for anything unreadable."""
    p = Path(path)
    if not p.is_file():
        raise CalibrationFileError(f"{p}: not a calibration file (run `leakaudit calibrate`)")
    if p.stat().st_size > MAX_BYTES:
        raise CalibrationFileError(f"{p}: larger than {MAX_BYTES // 2**20} MiB")
    try:
        data = json.loads(p.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CalibrationFileError(
            f"{p}: not calibration JSON ({exc.__class__.__name__})"
        ) from None
    if not isinstance(data, dict):
        raise CalibrationFileError(f"{p}: not calibration JSON (top level is not an object)")
    return Calibration.from_dict(data)


def check_applicable(
    cal: Calibration,
    *,
    architecture: str,
    input_shape: list[int],
    checkpoint_sha256: str | None,
    settings: dict[str, Any] | None = None,
    defense: dict[str, Any] | None = None,
) -> list[str]:
    """Refuse a calibration made for another model or other score settings; return
    warnings for a later round, other accuracy settings or another defence.

    Raises:
        CalibrationFileError: another architecture or input shape; another value of a
            setting in :data:`VALUE_SETTINGS`; another defence when the rule reads I²F.
    """
    notes = _check_settings(cal, settings or {}, defense)
    if cal.model.get("architecture") != architecture:
        raise CalibrationFileError(
            f"the calibration was made for another architecture ({cal.model.get('name')}); "
            "calibrate this model with `leakaudit calibrate`"
        )
    if list(cal.model.get("input_shape") or []) != list(input_shape):
        raise CalibrationFileError(
            f"the calibration was made for inputs {cal.model.get('input_shape')}, "
            f"this scan has {input_shape}"
        )
    made_for = cal.model.get("checkpoint_sha256")
    if made_for and checkpoint_sha256 and made_for != checkpoint_sha256:
        notes.append(
            f"the calibration was made {age(cal.created)} for another checkpoint of this "
            f"architecture (sha256 {made_for[:12]}…): its predictions assume the model has "
            "not changed much since; recalibrate after large updates"
        )
    return notes


def _check_settings(
    cal: Calibration, settings: dict[str, Any], defense: dict[str, Any] | None
) -> list[str]:
    made = cal.model.get("score_settings") or {}
    notes = []
    for key in (*VALUE_SETTINGS, *ACCURACY_SETTINGS):
        if key in made and key in settings and made[key] != settings[key]:
            text = f"scores.{key} is {settings[key]!r}; the calibration used {made[key]!r}"
            if key in VALUE_SETTINGS:
                raise CalibrationFileError(f"{text}: scan with the calibration's settings")
            notes.append(f"{text} (only the scores' accuracy differs)")
    reads_defense = cal.chosen is not None and any(s in DEFENSE_SCORES for s in cal.chosen.scores)
    if defense is not None and cal.defense and defense != cal.defense:
        text = f"the scan's defence {defense} is not the calibration's {cal.defense}"
        if reads_defense:
            raise CalibrationFileError(f"{text}, and the calibrated rule reads I²F")
        notes.append(f"{text}: the attack it predicts faced the calibration's defence")
    return notes


def age(created: str, now: datetime | None = None) -> str:
    """``"3 days ago (2026-11-19)"`` from an ISO timestamp."""
    try:
        then = datetime.fromisoformat(created)
    except ValueError:
        return f"at an unknown time ({created!r})"
    now = now or datetime.now(timezone.utc)
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    days = (now - then).total_seconds() / 86400
    when = then.date().isoformat()
    if days < 1:
        return f"today ({when})"
    n = int(days)
    return f"{n} day{'s' if n != 1 else ''} ago ({when})"
