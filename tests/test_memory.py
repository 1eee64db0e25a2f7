"""Chunk sizes follow the memory budget."""

from leakaudit.scores.memory import MAX_CHUNK, choose_chunk_size
from leakaudit.scores.options import ScoreOptions
from leakaudit.scores.plan import Plan


def _size(budget: int, **kw) -> int:
    opts = ScoreOptions(memory_budget=budget, **kw)
    return choose_chunk_size(opts, Plan.of(opts), d=3072, n_params=15_000, activations=20_000)


def test_chunk_size_scales_with_budget_and_work() -> None:
    small, large = _size(64 * 2**20), _size(1 * 2**30)
    assert 1 <= small < large <= MAX_CHUNK
    # More Lanczos steps or more probe sequences need more memory per sample.
    assert _size(256 * 2**20, max_iter=200) < _size(256 * 2**20, max_iter=20)
    assert _size(256 * 2**20, n_probes=32) < _size(256 * 2**20, n_probes=2)
    # Fewer scores, less work: grad_norm alone is never the bottleneck.
    assert _size(64 * 2**20, scores=("lavp_l2_max",)) > small
    # A budget below one sample's needs still scores, one sample at a time.
    assert _size(1) == 1
