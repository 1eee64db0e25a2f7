"""Reading a previous scan report as the gate's baseline (``--baseline``, ``gate.baseline``).

The file is read with :func:`leakaudit.report.reading.read_report` (bounded, checked
shape), and is refused when it scanned another architecture or kind of data, or lacks a
score a gate rule reads: every refusal is one :class:`~leakaudit.errors.InputError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from leakaudit.calibration.apply import PSNR_RULE
from leakaudit.errors import InputError
from leakaudit.gate import Baseline
from leakaudit.report.reading import _read_bounded, read_report

FLAG = "--baseline"


def _as_float(value: Any) -> float:
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else np.nan
    )


def read_baseline(path: str | Path, scores: Iterable[str]) -> tuple[Baseline, dict[str, Any]]:
    """The baseline report at ``path`` with the values of ``scores`` (``psnr``: its
    samples' predicted PSNR), and the report itself (for :func:`check_same_setup`).

    Raises:
        InputError: unreadable, not a scan report, or without one of ``scores``.
    """
    raw = read_report(path, FLAG)
    where = f"{FLAG} {path}"
    sha = hashlib.sha256(_read_bounded(Path(path), FLAG)).hexdigest()
    samples = raw["samples"]
    values: dict[str, np.ndarray] = {}
    for name in dict.fromkeys(scores):
        if name == PSNR_RULE:
            if not samples or any("predicted_psnr_db" not in s for s in samples):
                raise InputError(
                    f"{where}: the baseline has no predicted PSNR (a psnr rule needs a "
                    "baseline scanned with --calibration)"
                )
            values[name] = np.array([_as_float(s["predicted_psnr_db"]) for s in samples])
            continue
        if any(name not in s["scores"] for s in samples):
            raise InputError(
                f"{where}: the baseline has no {name} scores (rescan it with --scores all, "
                f"or with {name} in --scores)"
            )
        values[name] = np.array([_as_float(s["scores"][name]) for s in samples])
    content = [s.get("content_sha256") for s in samples]
    baseline = Baseline(
        path=str(path),
        sha256=sha,
        ids=[str(s.get("id", s["index"])) for s in samples],
        content=[c if isinstance(c, str) else None for c in content],
        scores=values,
    )
    return baseline, raw


def check_same_setup(
    raw: Mapping[str, Any], path: str | Path, model: Mapping[str, Any], dataset: Mapping[str, Any]
) -> None:
    """Refuse a baseline of another model architecture or data kind than this scan's.

    Raises:
        InputError: ``--baseline old.json: it scanned model resnet18 on cifar10; this
            scan is lenet on digits``.
    """
    old_model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    old_data = raw.get("dataset") if isinstance(raw.get("dataset"), dict) else {}
    assert isinstance(old_model, dict) and isinstance(old_data, dict)
    pairs = [
        ("architecture", old_model.get("class"), model.get("class")),
        ("data kind", old_data.get("kind"), dataset.get("kind")),
    ]
    for what, old, new in pairs:
        if old != new:
            raise InputError(
                f"{FLAG} {path}: the baseline's {what} is {old!r}, this scan's is {new!r}; "
                "compare with a report of the same model and data"
            )
