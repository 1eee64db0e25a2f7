"""A sample's scores do not depend on which other samples share its chunk.

Every sample's Lanczos sequences and CG system stop on that sample's own convergence test
(a sample that converges early is frozen while its chunk-mates go on), and every random
vector is seeded by (seed, sample index, purpose). So chunk sizes 1, 7 and the automatic
size give the same scores to rounding in float64, and resuming with another chunk size
is sound.
"""

from __future__ import annotations

import torch

from leakaudit.defenses import DPClipNoise, GaussianNoise
from leakaudit.linalg.cg import conjugate_gradient
from leakaudit.linalg.lanczos import lanczos
from leakaudit.report.formats.markdown import APPROX, APPROX_NOTE, render_markdown
from leakaudit.scores.engine import score_samples
from leakaudit.scores.names import ALL_SCORES, converged_key
from leakaudit.scores.options import ScoreOptions
from tests.ground_truth import digits, make_case
from tests.test_linalg import digit_grams


def _demo_model_and_digits(
    positions: list[int],
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The shipped demo LeNet (trained on 8×8 digits) and some of its digits, float64."""
    from leakaudit.api import load_inputs
    from leakaudit.demo import demo_config

    inputs = load_inputs(demo_config())
    xs, ys = zip(*(inputs.dataset[i] for i in positions))
    return inputs.model, torch.stack(xs).double(), torch.as_tensor(ys)


def test_scores_do_not_depend_on_the_chunk_size() -> None:
    # The trained demo model: its λ_min ends need many more Lanczos steps for some
    # samples than for others, which is what made chunk-mates matter before.
    # Demo positions 2, 9, 12, 16 and 17 settle after 16 Lanczos steps, 0, 1, 3 and 4
    # need 24: in a shared chunk the quick ones used to run on with the slow ones.
    model, X, Y = _demo_model_and_digits([0, 2, 9, 1, 12, 16, 3, 17, 4])
    base = dict(  # the Lanczos path (d = 64 would be scored densely)
        dtype=torch.float64, scores=ALL_SCORES, defense=GaussianNoise(0.01), dense_max_dim=0
    )
    runs = {
        size: score_samples(model, (X, Y), ScoreOptions(chunk_size=size, **base))
        for size in (1, 7, None)
    }
    steps = runs[1].diagnostics["lanczos_steps"]
    assert steps.max() > steps.min(), "the case must have samples of different difficulty"
    for size in (7, None):
        for name in ALL_SCORES:
            a, b = runs[1].scores[name], runs[size].scores[name]
            assert torch.allclose(a, b, rtol=1e-9, atol=0), (name, size, (a - b).abs().max())
        assert torch.equal(
            runs[1].diagnostics["lanczos_steps"], runs[size].diagnostics["lanczos_steps"]
        )


def test_dp_bias_solve_does_not_depend_on_the_chunk_size() -> None:
    # DP clipping has a bias term: its damped Gram system is solved by CG per sample.
    case = make_case("relubn-1ch", n=5)
    base = dict(  # the Lanczos path and CG (d = 36 would be scored densely)
        dtype=torch.float64, scores=("i2f",), defense=DPClipNoise(0.05, 0.01), dense_max_dim=0
    )
    a = score_samples(case.model, (case.X, case.Y), ScoreOptions(chunk_size=1, **base))
    b = score_samples(case.model, (case.X, case.Y), ScoreOptions(chunk_size=5, **base))
    # The same Lanczos steps per sample; what remains is float64 rounding of the batched
    # products (~1e-16), which CG on these ill-conditioned systems (κ up to 1e3) amplifies:
    # the hardest sample's final CG residual differs in its 3rd digit (7.0e-4 vs 7.2e-4,
    # both under CG's 1e-3), its score by ~2e-6 — far below what another sample's data or
    # a different system would change (≥ 1e-3).
    assert torch.equal(a.diagnostics["lanczos_steps"], b.diagnostics["lanczos_steps"])
    assert torch.allclose(a.scores["i2f"], b.scores["i2f"], rtol=1e-5, atol=0)
    for run in (a, b):
        assert bool((run.diagnostics["cg_residual"] < 1e-3).all())


def test_lanczos_freezes_each_sample_at_its_own_convergence() -> None:
    # Three operators of very different conditioning; each stops when its own λ_max
    # has settled, and its Ritz values equal those of a run on that operator alone.
    A = digit_grams(3)
    few, _ = digits(3, 8)
    few = few.reshape(3, 64).double()
    A[1] = few.T @ few / 3  # rank 3: settles within a few steps
    start = torch.ones(3, 1, 64, dtype=A.dtype) + torch.linspace(0, 1, 64, dtype=A.dtype)

    def mv_of(mats):
        return lambda V: torch.einsum("bij,bmj->bmi", mats, V)

    def settled(run):
        ritz = run.ritz()
        return ritz.residual_bound[:, 0, -1] <= 1e-10 * ritz.values[:, 0, -1].abs()

    batched = lanczos(mv_of(A), start, 64, converged=settled, check_every=4)
    lengths = batched.length[:, 0]
    assert lengths.unique().numel() > 1, lengths
    assert float(batched.ritz().residual_bound[0, 0, -1]) > 0  # stopped by the test, not β = 0
    rb = batched.ritz()
    for b in range(3):
        alone = lanczos(mv_of(A[b : b + 1]), start[b : b + 1], 64, converged=settled, check_every=4)
        assert alone.length[0, 0] == lengths[b]
        ra = alone.ritz()
        assert torch.allclose(ra.values[0, 0, -1], rb.values[b, 0, -1], rtol=1e-12)
        assert torch.allclose(ra.values[0, 0, 0], rb.values[b, 0, 0], rtol=1e-10)
        # ... and the frozen sample keeps its own residual estimate (not the padding's 0).
        tiny = 1e-12 * float(rb.values[b, 0, -1])
        assert torch.allclose(
            ra.residual_bound[0, 0, -1], rb.residual_bound[b, 0, -1], rtol=1e-6, atol=tiny
        )
        # The true eigenvalue is within the residual bound of the Ritz value.
        ev = torch.linalg.eigvalsh(A[b])[-1]
        assert abs(float(rb.values[b, 0, -1] - ev)) <= 2 * float(rb.residual_bound[b, 0, -1]) + 1e-9


def test_cg_rows_stop_on_their_own() -> None:
    A = digit_grams(2) + 1e-2 * torch.eye(64, dtype=torch.float64)
    X, _ = digits(2, 8)
    rhs = X.reshape(2, 64).double()
    both = conjugate_gradient(lambda v: torch.einsum("bij,bj->bi", A, v), rhs, tol=1e-8)
    for b in range(2):
        alone = conjugate_gradient(lambda v, b=b: v @ A[b].T, rhs[b : b + 1], tol=1e-8)
        assert int(alone.iterations[0]) == int(both.iterations[b])
        gap = torch.linalg.vector_norm(alone.solution[0] - both.solution[b])
        assert gap <= 1e-8 * torch.linalg.vector_norm(both.solution[b])  # rounding only
        exact = torch.linalg.solve(A[b], rhs[b])
        assert torch.linalg.vector_norm(both.solution[b] - exact) <= 1e-6 * exact.norm()


def test_unconverged_values_are_marked_approximate_in_reports() -> None:
    from leakaudit.api import build_report
    from leakaudit.demo import demo_config

    model, X, Y = _demo_model_and_digits([0, 10, 20, 30])
    # Two Lanczos steps cannot resolve λ_min of a 64-dimensional operator.
    opts = ScoreOptions(
        scores=ALL_SCORES, max_iter=2, check_every=1, defense=GaussianNoise(0.01), dense_max_dim=0
    )
    result = score_samples(model, (X.float(), Y), opts)
    flags = result.diagnostics[converged_key("lavp_l2_min")]
    assert not bool(flags.all())
    report = build_report(
        result,
        ids=[f"s{i}" for i in range(4)],
        config=demo_config(),
        model_info={},
        dataset_info={},
        seconds=1.0,
    )
    md = render_markdown(report, top_k=4)
    assert APPROX_NOTE in md
    for s in report.samples:
        value = f"{s.scores['lavp_l2_min']:.4g}"
        approx = s.diagnostics[converged_key("lavp_l2_min")] is False
        assert (f"| {APPROX}{value} |" in md) == approx, (s.id, value)
        if approx:
            assert s.id in report.summary["non_converged"]
        # The gradient norm is exact: never marked.
        assert f"{APPROX}{s.scores['grad_norm']:.4g}" not in md
