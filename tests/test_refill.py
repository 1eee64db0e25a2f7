"""Refilled slots: at most ``width`` samples run Lanczos at once; a sample that stops
hands its slot to the next one waiting, so the batched product stays full while a slow
sample finishes, and every sample's run is the one it gets alone."""

from __future__ import annotations

import torch

from leakaudit.defenses import GaussianNoise
from leakaudit.linalg.lanczos import lanczos
from leakaudit.linalg.operators import MatmatOperator
from leakaudit.scores.engine import score_samples
from leakaudit.scores.names import ALL_SCORES
from leakaudit.scores.options import ScoreOptions
from tests.ground_truth import digits
from tests.security.test_chunking import _demo_model_and_digits
from tests.test_active_set import settled_to
from tests.test_linalg import digit_grams


def _slow_and_fast() -> torch.Tensor:
    """Five 64 × 64 operators: a slow one (full rank, a cluster of nearly equal top
    eigenvalues) among four of rank 3 (their Krylov spaces close after 3 steps)."""
    X, _ = digits(12, 8)
    X = X.reshape(4, 3, 64).double()
    fast = X.transpose(1, 2) @ X / 3
    slow = digit_grams(1)[0]
    evals, evecs = torch.linalg.eigh(slow)
    evals[-4:] = evals[-1] * torch.tensor([0.9999, 0.99993, 0.99996, 1.0], dtype=evals.dtype)
    slow = evecs @ torch.diag(evals) @ evecs.T
    return torch.stack([fast[0], slow, fast[1], fast[2], fast[3]])


def test_slots_refill_and_every_sample_gets_its_own_run() -> None:
    A = _slow_and_fast()
    start = torch.ones(5, 1, 64, dtype=A.dtype) + torch.linspace(0, 1, 64, dtype=A.dtype)
    batches: list[list[int]] = []

    def product(idx: torch.Tensor):
        def mv(V: torch.Tensor) -> torch.Tensor:
            batches.append(idx.tolist())
            return torch.einsum("bij,bmj->bmi", A[idx], V)

        return mv

    op = MatmatOperator(product(torch.arange(5)), 5, 64, product)
    stopped: list[list[int]] = []
    run = lanczos(
        op,
        start,
        64,
        converged=settled_to(1e-9),
        check_every=2,
        width=2,
        on_done=lambda m: stopped.append(m.nonzero()[:, 0].tolist()),
    )
    steps = run.length[:, 0]
    assert int(steps[1]) > 3 * int(steps[[0, 2, 3, 4]].max()), steps
    # Two samples per product until the stream runs dry, then the last one alone: the
    # slow sample shares its steps with the fast ones, one after the other ...
    sizes = [len(b) for b in batches]
    full = sizes.index(1)
    assert set(sizes[:full]) == {2} and len({tuple(b) for b in batches[full:]}) == 1
    assert [b for b in batches if 1 in b] == [b for b in batches[: int(steps[1])]]
    # ... and every sample paid for its own steps only.
    assert sum(sizes) == int(steps.sum())
    # Each sample was reported when it stopped.
    assert sorted(i for s in stopped for i in s) == list(range(5)) and len(stopped) == 5
    # Each sample's run is the run it gets alone.
    for b in range(5):
        alone = lanczos(
            lambda V, b=b: torch.einsum("ij,bmj->bmi", A[b], V),
            start[b : b + 1],
            64,
            converged=settled_to(1e-9),
            check_every=2,
        )
        n = int(steps[b])
        assert int(alone.length[0, 0]) == n
        assert torch.allclose(alone.alpha[0, 0, :n], run.alpha[b, 0, :n], rtol=1e-10, atol=1e-12)
        assert torch.allclose(alone.beta[0, 0, :n], run.beta[b, 0, :n], rtol=1e-10, atol=1e-12)
    top = run.ritz().values[:, 0, -1]
    assert torch.allclose(top, torch.linalg.eigvalsh(A)[:, -1], rtol=1e-8)


def test_scores_do_not_depend_on_the_lanczos_width() -> None:
    # Demo positions 2, 9, 12, 16, 17 settle after 16 Lanczos steps, 0, 1, 3, 4 after 24:
    # with 3 slots in a chunk of 9, the quick ones hand their slots on.
    model, X, Y = _demo_model_and_digits([0, 2, 9, 1, 12, 16, 3, 17, 4])
    base = dict(
        dtype=torch.float64, scores=ALL_SCORES, defense=GaussianNoise(0.01), dense_max_dim=0
    )
    alone = score_samples(model, (X, Y), ScoreOptions(chunk_size=1, **base))
    seen: list[int] = []
    slots = score_samples(
        model, (X, Y), ScoreOptions(chunk_size=9, lanczos_width=3, **base), progress=seen.append
    )
    for name in ALL_SCORES:
        a, b = alone.scores[name], slots.scores[name]
        assert torch.allclose(a, b, rtol=1e-9, atol=0), (name, (a - b).abs().max())
    steps = slots.diagnostics["lanczos_steps"]
    assert torch.equal(alone.diagnostics["lanczos_steps"], steps)
    assert steps.min() < steps.max()
    assert slots.products == alone.products  # each sample pays for its own steps
    assert sum(seen) == 9 and len(seen) > 2  # reported as slots free up
