"""What a scan does besides scoring stays linear: results are joined once, not at every
chunk, and a batch scan hashes its samples once (for the report), not its batches too."""

import pytest
import torch

import leakaudit.api as api
import leakaudit.resume as resume
from leakaudit.api import scan
from leakaudit.config import with_overrides
from leakaudit.demo import demo_config
from leakaudit.resume import PartialResults, sample_digest
from leakaudit.scores.options import ScoreResult


def _part(start: int, n: int) -> ScoreResult:
    idx = torch.arange(start, start + n)
    return ScoreResult(
        indices=idx,
        labels=idx % 10,
        scores={"grad_norm": idx.double() / 7},
        diagnostics={"converged": torch.ones(n, dtype=torch.bool)},
        backend="func",
        device="cpu",
        seconds=0.1,
    )


def test_partial_results_join_once(monkeypatch: pytest.MonkeyPatch) -> None:
    joins = []
    real = resume.concat_results
    def counting(parts):  # type: ignore[no-untyped-def]
        joins.append(len(parts))
        return real(parts)

    monkeypatch.setattr(resume, "concat_results", counting)
    done = _part(0, 3)
    partial = PartialResults(None, "key", 40, done, torch.full((3, 32), 7, dtype=torch.uint8))
    for k in range(1, 11):  # ten chunks of 3 after the 3 resumed samples
        part = _part(3 * k, 3)
        rows = [bytearray(sample_digest(torch.tensor([i]), 0)) for i in range(3 * k, 3 * k + 3)]
        digests = torch.stack([torch.frombuffer(r, dtype=torch.uint8) for r in rows])
        partial.add(part, digests)
    assert joins == []  # nothing joined while chunks come in
    assert partial.count == 33
    result = partial.result
    assert result is not None and joins == [11]
    assert result.indices.tolist() == list(range(33))
    assert result.scores["grad_norm"].tolist() == (torch.arange(33).double() / 7).tolist()
    assert partial.digests.shape == (33, 32)
    assert partial.digests[:3].eq(7).all() and not partial.digests[3:].eq(7).all()
    assert partial.result is result and joins == [11]  # joined once, then kept


def test_batch_scan_hashes_each_sample_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = resume.sample_digest

    def counting(x, y):  # type: ignore[no-untyped-def]
        calls.append(tuple(torch.as_tensor(x).shape))
        return real(x, y)

    monkeypatch.setattr(resume, "sample_digest", counting)
    monkeypatch.setattr(api, "sample_digest", counting)
    cfg = with_overrides(
        demo_config(),
        {
            "data.per_class": 1,
            "scores.select": ["grad_norm"],
            "scores.batch_size": 4,
            "gate.rules": [],
        },
    )
    report = scan(cfg)
    assert len(report.samples) == 10
    # One digest per sample (the report's content hashes), none of the three batches.
    assert len(calls) == 10
    assert all(shape == (1, 8, 8) for shape in calls)
