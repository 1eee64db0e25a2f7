"""Partial results of a running scan, so that an interrupted scan can resume.

After each chunk the engine hands over, the results so far are written atomically to a
sidecar file (``<report>.json.partial.pt``; one per rank in a torchrun job,
``<sidecar>.rank<r>-of-<w>``, see :mod:`leakaudit.distributed`): a ``torch.save`` of
plain tensors and strings, read back with ``weights_only=True``, marked with
:data:`FORMAT`. Each finished sample is a record keyed by its dataset index, so the
files of any number of ranks merge into one set of results. Two checks guard a resume:

* a fingerprint of everything that changes the numbers: the model's settings and the
  digest of its weights, the checkpoint's SHA-256, the data and score settings (seed and
  dtype included), the defence. The chunk size and memory budget are not part of it;
* a SHA-256 per finished sample over its input tensor and label, taken as the samples
  stream through the engine. On resume the same samples are read again and compared, so
  a data file rewritten between the interruption and ``--resume`` is refused.

Only a file that is a leakaudit partial-results file (:func:`is_partial_file`) is ever
replaced or deleted.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from leakaudit.config import ScanConfig, config_to_dict
from leakaudit.errors import ConfigError, InputError
from leakaudit.report.files import write_atomic
from leakaudit.scores.engine import concat_results
from leakaudit.scores.options import ScoreResult

FORMAT = "leakaudit-partial-v3"
#: Formats whose records this version resumes (v2 held a prefix of the dataset, v3 any
#: samples: the same layout).
_RESUMABLE = {"leakaudit-partial-v2", FORMAT}
#: Formats this version recognises as its own files (replaceable), resumable or not.
_OUR_FORMATS = {"leakaudit-partial-v1", *_RESUMABLE}

#: Settings that change how results are presented or batched, not the numbers.
_NOT_NUMERIC = {"risk_score", "directions", "chunk_size", "memory_budget"}

_DIGEST = 32  # bytes of a SHA-256


def weights_digest(model: nn.Module) -> str:
    """SHA-256 over the model's parameters and buffers (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def fingerprint(
    config: ScanConfig,
    checkpoint_sha256: str | None,
    weights: str,
    computed: Sequence[str] | None = None,
) -> str:
    """SHA-256 over the settings and weights that determine the per-sample numbers.

    Args:
        config: the scan's configuration.
        checkpoint_sha256: the checkpoint file's SHA-256 (``None`` without one).
        weights: :func:`weights_digest` of the loaded model (covers random weights too).
        computed: the scores the scan computes (``scores.select`` resolved); they stand
            for ``scores.select``, so ``auto`` and the list it resolves to match.
    """
    d = config_to_dict(config)
    scores = {k: v for k, v in d["scores"].items() if k not in _NOT_NUMERIC}
    if computed is not None:
        scores["select"] = list(computed)
    defense = {k: v for k, v in d["defense"].items() if k != "target_error"}
    key = {
        "model": d["model"],
        "data": d["data"],
        "scores": scores,
        "defense": defense,
        "checkpoint": checkpoint_sha256,
        "weights": weights,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def sample_digest(x: Any, y: Any) -> bytes:
    """SHA-256 of one sample: its input tensor (dtype, shape, bytes) and its label."""
    t = torch.as_tensor(x).detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}|{tuple(t.shape)}|{int(y)}|".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.digest()


class DigestingDataset(Dataset[Any]):
    """``dataset``, remembering the :func:`sample_digest` of every sample read; with
    ``hashing=False`` it hashes nothing and :meth:`take` gives zero rows (for results
    whose digests are never read: a batch scan's, whose report hashes its samples)."""

    def __init__(self, dataset: Any, *, hashing: bool = True) -> None:
        self.dataset, self.hashing = dataset, hashing
        self.digests: dict[int, bytes] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        x, y = self.dataset[index]
        if self.hashing:
            self.digests[int(index)] = sample_digest(x, y)
        return x, y

    def take(self, indices: Tensor) -> Tensor:
        """``[b, 32]`` uint8 digests of the samples at ``indices`` (read before)."""
        if not self.hashing:
            return torch.zeros(len(indices), _DIGEST, dtype=torch.uint8)
        rows = [self.digests.pop(int(i)) for i in indices.tolist()]
        data = b"".join(rows)
        return torch.frombuffer(bytearray(data), dtype=torch.uint8).reshape(len(rows), _DIGEST)


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


def _read(path: Path) -> Any:
    """The unpickled contents (``weights_only``), or ``None`` if not a torch zip file."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None


def is_partial_file(path: str | Path) -> bool:
    """Whether ``path`` is a regular file written by :class:`PartialResults`."""
    path = Path(path)
    if not path.is_file():
        return False
    blob = _read(path)
    return isinstance(blob, dict) and blob.get("format") in _OUR_FORMATS


def check_partial_path(path: str | Path) -> None:
    """Raise :class:`InputError` if ``path`` exists and is not a partial-results file:
    it would be overwritten after the first chunk and deleted at the end."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not is_partial_file(path):
        raise InputError(
            f"{path} exists and is not a leakaudit partial-results file; refusing to "
            "overwrite it (choose another --partial path)"
        )


def remove_partial(path: str | Path) -> None:
    """Delete ``path`` if it is a partial-results file; leave anything else alone."""
    if is_partial_file(path):
        Path(path).unlink(missing_ok=True)


class PartialResults:
    """Results gathered so far, mirrored to ``path`` (if any) after every chunk.

    Args:
        path: the sidecar file; ``None`` keeps results in memory only.
        fingerprint: see :func:`fingerprint`.
        total: the number of samples of the whole scan.
        done: results already on hand (from a resumed file).
        digests: ``[len(done), 32]`` uint8 :func:`sample_digest` of those samples.
    """

    def __init__(
        self,
        path: Path | None,
        fingerprint: str,
        total: int,
        done: ScoreResult | None = None,
        digests: Tensor | None = None,
    ) -> None:
        if path is not None:
            check_partial_path(path)
        self.path, self.fingerprint, self.total = path, fingerprint, total
        # Chunks are kept as a list and joined once when read: appending to one growing
        # result would copy everything so far at every chunk (quadratic in the chunks).
        self._parts: list[ScoreResult] = [] if done is None else [done]
        self._digests: list[Tensor] = [
            digests if digests is not None else torch.empty(0, _DIGEST, dtype=torch.uint8)
        ]

    @property
    def count(self) -> int:
        """Samples finished (records keyed by their dataset indices)."""
        return sum(int(p.indices.numel()) for p in self._parts)

    @property
    def result(self) -> ScoreResult | None:
        """Every result so far as one (``None`` before the first)."""
        if len(self._parts) > 1:
            self._parts = [concat_results(self._parts)]
        return self._parts[0] if self._parts else None

    @property
    def digests(self) -> Tensor:
        """``[count, 32]`` uint8 digests of the samples of :attr:`result`, in its order."""
        if len(self._digests) > 1:
            self._digests = [torch.cat(self._digests)]
        return self._digests[0]

    def add(self, part: ScoreResult, digests: Tensor) -> None:
        """Append one chunk's results and their samples' ``[b, 32]`` digests, and write
        the sidecar atomically (when there is one)."""
        self._parts.append(part)
        self._digests.append(digests)
        if self.path is not None:
            buf = io.BytesIO()
            result = self.result
            assert result is not None
            torch.save(
                {
                    "format": FORMAT,
                    "fingerprint": self.fingerprint,
                    "total": self.total,
                    "digests": self.digests,
                    "result": _pack(result),
                },
                buf,
            )
            write_atomic(self.path, buf.getvalue())


def _data_changed(path: Path, why: str) -> InputError:
    return InputError(
        f"the data changed since the partial results were written: {why}; "
        f"delete {path} or drop --resume"
    )


def _check_scores(path: Path, blob: dict[str, Any], computed: Sequence[str] | None) -> None:
    """Refuse partial results that hold other scores than this scan computes."""
    stored = list((blob.get("result") or {}).get("scores") or {})
    if computed is None or sorted(stored) == sorted(computed):
        return
    raise ConfigError(
        f"partial results in {path} hold the scores {', '.join(stored) or 'none'}, this scan "
        f"computes {', '.join(computed)}: rerun with the same --scores (and gate rules), "
        "or delete the file / drop --resume"
    )


def load_partials(
    paths: Sequence[Path],
    fingerprint: str,
    dataset: Any,
    ids: list[str],
    positions: Sequence[int] | None = None,
    computed: Sequence[str] | None = None,
) -> tuple[ScoreResult, Tensor] | None:
    """Results stored in ``paths`` by interrupted scans (of any world size) of the same
    configuration and data, merged by dataset index: a sample in two files counts once.

    Only the samples at ``positions`` (default: all) are kept; they are read again from
    ``dataset`` and their digests compared with the stored ones.

    Args:
        paths, fingerprint, dataset, ids: the sidecars, :func:`fingerprint` of this
            scan, its data and sample ids.
        positions: the dataset indices to keep (default: all).
        computed: the scores this scan computes; partial results of other scores are
            refused by name.

    Returns:
        ``(result, digests)`` sorted by index, or ``None`` when no file exists or none
        holds a wanted sample (nothing to resume).

    Raises:
        InputError: a file is not a leakaudit partial-results file, or the data changed.
        ConfigError: one was written by a scan with other settings, scores or weights.
    """
    total = len(dataset)
    parts = [_read_partial(p, fingerprint, total, computed) for p in paths if p.exists()]
    if not parts:
        return None
    result = concat_results([r for r, _, _ in parts])
    digests = torch.cat([d for _, d, _ in parts])
    origin = [p for _, d, p in parts for _ in range(len(d))]
    wanted = torch.ones(total, dtype=torch.bool)
    if positions is not None:
        wanted = torch.zeros(total, dtype=torch.bool)
        wanted[torch.as_tensor(list(positions), dtype=torch.int64)] = True
    keep = _first_of_each(result.indices, wanted)
    if not keep:
        return None
    for row in keep:
        i = int(result.indices[row])
        x, y = dataset[i]
        if sample_digest(x, y) != bytes(digests[row].tolist()):
            raise _data_changed(origin[row], f"sample {i} ({ids[i]}) differs")
    rows = torch.as_tensor(keep, dtype=torch.int64)
    return select_rows(result, rows), digests[rows]


def _first_of_each(indices: Tensor, wanted: Tensor) -> list[int]:
    """Rows of the first record of each wanted index, in index order."""
    first: dict[int, int] = {}
    for row, i in enumerate(indices.tolist()):
        if wanted[i] and i not in first:
            first[i] = row
    return [first[i] for i in sorted(first)]


def select_rows(result: ScoreResult, rows: Tensor) -> ScoreResult:
    """The records of ``result`` at ``rows`` (an index tensor), in that order."""
    return ScoreResult(
        indices=result.indices[rows],
        labels=result.labels[rows],
        scores={k: v[rows] for k, v in result.scores.items()},
        diagnostics={k: v[rows] for k, v in result.diagnostics.items()},
        backend=result.backend,
        device=result.device,
        seconds=result.seconds,
        products=result.products,  # the work that made these rows (reordered or chosen)
        product_seconds=result.product_seconds,
    )


def _read_partial(
    path: Path, fingerprint: str, total: int, computed: Sequence[str] | None
) -> tuple[ScoreResult, Tensor, Path]:
    """One partial-results file, checked to belong to this scan; its records in range."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if not zipfile.is_zipfile(path):
            raise InputError(f"{path} is not a leakaudit partial-results file") from None
        raise InputError(f"cannot read partial results {path}: {exc}".splitlines()[0]) from exc
    if not isinstance(blob, dict) or blob.get("format") not in _OUR_FORMATS:
        raise InputError(f"{path} is not a leakaudit partial-results file")
    if blob["format"] not in _RESUMABLE:
        raise ConfigError(
            f"partial results in {path} were written by an older leakaudit; delete the file "
            "or run without --resume"
        )
    _check_scores(path, blob, computed)
    if blob["fingerprint"] != fingerprint:
        raise ConfigError(
            f"partial results in {path} come from a scan with a different model, data or "
            "score settings; delete the file or run without --resume"
        )
    if blob["total"] != total:
        raise _data_changed(path, f"it had {blob['total']} samples, now {total}")
    result = _unpack(blob["result"])
    digests: Tensor = blob["digests"]
    idx = result.indices
    n = int(idx.numel())
    in_range = n == 0 or (int(idx.min()) >= 0 and int(idx.max()) < total)
    if not in_range or tuple(digests.shape) != (n, _DIGEST):
        raise InputError(f"partial results in {path} do not fit the dataset")
    return result, digests, path
