"""Partial results of a running scan, so that an interrupted scan can resume.

After each chunk the engine hands over, the results so far are written atomically to a
sidecar file (``<report>.json.partial.pt``): a ``torch.save`` of plain tensors and
strings, read back with ``weights_only=True``. A fingerprint of everything that
changes the numbers (model, weights, data, score options, defence) guards against
resuming with a different configuration.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch

from leakaudit.config import ScanConfig, config_to_dict
from leakaudit.errors import ConfigError, InputError
from leakaudit.report.files import write_atomic
from leakaudit.scores.engine import concat_results
from leakaudit.scores.options import ScoreResult

FORMAT = "leakaudit-partial-v1"

#: Settings that change how results are presented or batched, not the numbers.
_NOT_NUMERIC = {"risk_score", "directions", "chunk_size", "memory_budget"}


def fingerprint(config: ScanConfig, checkpoint_sha256: str | None) -> str:
    """SHA-256 over the settings that determine the per-sample numbers."""
    d = config_to_dict(config)
    scores = {k: v for k, v in d["scores"].items() if k not in _NOT_NUMERIC}
    defense = {k: v for k, v in d["defense"].items() if k != "target_error"}
    key = {
        "model": d["model"],
        "data": d["data"],
        "scores": scores,
        "defense": defense,
        "checkpoint": checkpoint_sha256,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _pack(result: ScoreResult) -> dict[str, Any]:
    return {
        "indices": result.indices,
        "labels": result.labels,
        "scores": dict(result.scores),
        "diagnostics": dict(result.diagnostics),
        "backend": result.backend,
        "device": result.device,
        "seconds": float(result.seconds),
    }


def _unpack(d: dict[str, Any]) -> ScoreResult:
    return ScoreResult(
        indices=d["indices"],
        labels=d["labels"],
        scores=d["scores"],
        diagnostics=d["diagnostics"],
        backend=d["backend"],
        device=d["device"],
        seconds=d["seconds"],
    )


class PartialResults:
    """Results gathered so far, mirrored to ``path`` (if any) after every chunk.

    Args:
        path: the sidecar file; ``None`` keeps results in memory only.
        fingerprint: see :func:`fingerprint`.
        total: the number of samples of the whole scan.
        done: results already on hand (from a resumed file).
    """

    def __init__(
        self, path: Path | None, fingerprint: str, total: int, done: ScoreResult | None = None
    ) -> None:
        self.path, self.fingerprint, self.total = path, fingerprint, total
        self.result = done

    @property
    def count(self) -> int:
        """Samples finished (the first ``count`` dataset positions)."""
        return 0 if self.result is None else int(self.result.indices.numel())

    def add(self, part: ScoreResult) -> None:
        """Append one chunk's results and write the sidecar atomically."""
        self.result = part if self.result is None else concat_results([self.result, part])
        if self.path is not None:
            buf = io.BytesIO()
            torch.save(
                {
                    "format": FORMAT,
                    "fingerprint": self.fingerprint,
                    "total": self.total,
                    "result": _pack(self.result),
                },
                buf,
            )
            write_atomic(self.path, buf.getvalue())


def load_partial(path: Path, fingerprint: str, total: int) -> ScoreResult | None:
    """Results stored in ``path`` by an interrupted scan of the same configuration.

    Returns ``None`` when the file does not exist (nothing to resume: start afresh).

    Raises:
        InputError: the file is not a leakaudit partial-results file.
        ConfigError: it was written by a scan with other settings or data.
    """
    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"cannot read partial results {path}: {exc}".splitlines()[0]) from exc
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise InputError(f"{path} is not a leakaudit partial-results file")
    if blob["fingerprint"] != fingerprint or blob["total"] != total:
        raise ConfigError(
            f"partial results in {path} come from a scan with a different model, data or "
            "score settings; delete the file or run without --resume"
        )
    result = _unpack(blob["result"])
    expected = torch.arange(result.indices.numel())
    if not torch.equal(result.indices, expected):
        raise InputError(f"partial results in {path} are not a prefix of the dataset")
    return result
