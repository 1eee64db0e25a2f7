"""Batch-level scores against dense float64 ground truth: the gradient of a batch's mean
loss as a function of the whole batch (d = B·d₁), and each sample's block of I²F."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from typer.testing import CliRunner

from leakaudit.cli import app
from leakaudit.defenses import DPClipNoise, GaussianNoise
from leakaudit.report.schema import load_schema, schema_errors
from leakaudit.scores.batches import score_batches
from leakaudit.scores.batching import Batching
from leakaudit.scores.engine import score_samples
from leakaudit.scores.options import ScoreOptions
from tests.ground_truth import dense_batch, make_case


def exact(d: int, **kw) -> ScoreOptions:
    """Exhausted Krylov spaces on the Lanczos path (tests/test_dense_path.py: the dense one)."""
    kw.setdefault("dense_max_dim", 0)
    return ScoreOptions(dtype=torch.float64, max_iter=d, n_probes=d, tol=1e-12, tol_min=1e-12, **kw)


@pytest.mark.parametrize(
    ("n", "size", "shuffle", "drop_last"),
    [(10, 3, True, False), (10, 3, True, True), (9, 4, False, False), (8, 4, True, True)],
)
def test_batches_are_the_loaders(n: int, size: int, shuffle: bool, drop_last: bool) -> None:
    data = TensorDataset(torch.arange(n))
    gen = torch.Generator().manual_seed(7)
    loader = DataLoader(data, batch_size=size, shuffle=shuffle, drop_last=drop_last, generator=gen)
    want = [b[0].tolist() for b in loader]
    assert Batching(size, shuffle=shuffle, seed=7, drop_last=drop_last).batches(n) == want


def _block_parts(J: torch.Tensor, bias, noise_var: float, blocks: int) -> torch.Tensor:
    """E‖e_i‖² of each block of e = (A + εI)⁻¹Jᵀδ, ε = 1e-3·λ_max (dense)."""
    A = J.T @ J
    eps = 1e-3 * torch.linalg.eigvalsh(A)[-1]
    M = torch.linalg.solve(A + eps * torch.eye(A.shape[0], dtype=A.dtype), J.T)
    per_coord = noise_var * M.pow(2).sum(1)
    if bias is not None:
        per_coord = per_coord + (M @ bias).pow(2)
    return per_coord.reshape(blocks, -1).sum(1)


@pytest.mark.parametrize("name", ["lenet-1ch", "mlp-3ch", "relubn-1ch"])
@pytest.mark.parametrize("size", [2, 3])
def test_batch_scores_match_dense(name: str, size: int) -> None:
    case = make_case(name, n=2 * size)
    d = size * case.X[0].numel()
    sigma = 0.05
    batching = Batching(size, shuffle=True, seed=3)
    res = score_batches(
        case.model, TensorDataset(case.X, case.Y), batching, exact(d, defense=GaussianNoise(sigma))
    )
    assert res.batches.backend == "func"
    assert bool(res.batches.diagnostics["converged"].all())
    assert len(res.members) == 2
    for k, members in enumerate(res.members):
        D = dense_batch(case.model, case.X[members], case.Y[members])
        ev = torch.linalg.eigvalsh(D.A)
        s = {key: float(v[k]) for key, v in res.batches.scores.items()}
        assert s["grad_norm"] == pytest.approx(float(D.g.norm()), rel=1e-10)
        assert s["lavp_l2_max"] == pytest.approx(2 * float(ev[-1]), rel=1e-8)
        assert s["lavp_cos_max"] == pytest.approx(
            float(torch.linalg.eigvalsh(D.H_cos)[-1]), rel=1e-8
        )
        assert s["i2f_lb"] == pytest.approx(D.i2f_lb(None, sigma**2), rel=1e-8)
        assert s["i2f"] == pytest.approx(D.i2f(None, sigma**2), rel=1e-6)
        parts = _block_parts(D.J, None, sigma**2, size)
        blocks = res.batches.diagnostics["i2f_blocks"][k]
        torch.testing.assert_close(blocks.pow(2), parts, rtol=1e-6, atol=0)
        unit = res.batches.diagnostics["i2f_blocks_unit_sigma"][k]
        torch.testing.assert_close(unit * sigma, blocks, rtol=1e-9, atol=0)


def test_block_parts_with_a_bias_match_dense() -> None:
    """DP clipping: a bias part (a block of the CG solution) and a noise part."""
    case = make_case("lenet-1ch", n=3)
    d = 3 * case.X[0].numel()
    defense = DPClipNoise(clip=0.05, sigma=0.2)
    res = score_batches(
        case.model,
        TensorDataset(case.X, case.Y),
        Batching(3, shuffle=False),
        exact(d, defense=defense, scores=("i2f",)),
    )
    D = dense_batch(case.model, case.X, case.Y)
    bias = defense.bias(D.g[None])
    assert bias is not None and float(bias.norm()) > 0
    var = float(defense.noise_variance(D.g[None])[0])
    parts = _block_parts(D.J, bias[0], var, 3)
    torch.testing.assert_close(
        res.batches.diagnostics["i2f_blocks"][0].pow(2), parts, rtol=1e-6, atol=0
    )
    assert float(res.batches.scores["i2f"][0]) ** 2 == pytest.approx(float(parts.sum()), rel=1e-6)


def test_random_probes_parts_add_up_to_the_batch_i2f() -> None:
    """With random probes the parts are estimates, but they sum to the SLQ estimate itself,
    are never negative (block-local probes), and approach the dense parts."""
    case = make_case("lenet-1ch", n=4)
    d = 4 * case.X[0].numel()
    sigma = 0.05
    opts = ScoreOptions(dtype=torch.float64, scores=("i2f",), n_probes=6, max_iter=d,
                        tol=1e-10, defense=GaussianNoise(sigma),
                        dense_max_dim=0)  # fmt: skip  # random probes: the Lanczos path
    data = TensorDataset(case.X, case.Y)
    res = score_batches(case.model, data, Batching(4, shuffle=False), opts)
    blocks = res.batches.diagnostics["i2f_blocks"]
    total = blocks.pow(2).sum(1)
    torch.testing.assert_close(total, res.batches.scores["i2f"].pow(2), rtol=1e-8, atol=0)
    D = dense_batch(case.model, case.X, case.Y)
    want = _block_parts(D.J, None, sigma**2, 4)
    errors = []
    for probes in (4, 64):  # per block
        many = score_batches(
            case.model, data, Batching(4, shuffle=False), replace(opts, n_probes=4 * probes)
        )
        got = many.batches.diagnostics["i2f_blocks"][0].pow(2)
        assert bool((got > 0).all())
        errors.append(float(((got - want) / want).abs().max()))
    assert errors[1] < 0.25 and errors[1] < errors[0], errors


def test_batch_of_one_is_the_per_sample_scan() -> None:
    case = make_case("mlp-1ch", n=3)
    d = case.X[0].numel()
    opts = exact(d)
    per = score_samples(case.model, (case.X, case.Y), opts)
    res = score_batches(case.model, TensorDataset(case.X, case.Y), Batching(1, shuffle=False), opts)
    rows = res.per_sample()
    for key in per.scores:
        torch.testing.assert_close(rows.scores[key], per.scores[key], rtol=1e-8, atol=1e-14)


def test_per_sample_rows_name_samples_and_a_ragged_last_batch_is_kept() -> None:
    case = make_case("lenet-1ch", n=5)
    d = 2 * case.X[0].numel()
    res = score_batches(
        case.model,
        TensorDataset(case.X, case.Y),
        Batching(2, seed=1),
        exact(d, scores=("grad_norm", "i2f")),
    )
    assert [len(m) for m in res.members] == [2, 2, 1]
    rows = res.per_sample()
    assert rows.indices.tolist() == [0, 1, 2, 3, 4]
    assert rows.labels.tolist() == case.Y.tolist()
    for r, pos in enumerate(rows.indices.tolist()):
        k = next(i for i, m in enumerate(res.members) if pos in m)
        assert int(rows.diagnostics["batch"][r]) == k
        assert float(rows.scores["grad_norm"][r]) == float(res.batches.scores["grad_norm"][k])
    # The lone last sample's block is its whole batch's I²F.
    last = res.members[-1][0]
    assert float(rows.scores["i2f"][last]) == pytest.approx(float(res.batches.scores["i2f"][2]))
    dropped = score_batches(
        case.model,
        TensorDataset(case.X, case.Y),
        Batching(2, seed=1, drop_last=True),
        exact(d, scores=("grad_norm",)),
    )
    assert sorted(dropped.per_sample().indices.tolist()) == sorted(res.members[0] + res.members[1])


def test_scan_batch_size_reports_batches_and_blocks(tmp_path: Path) -> None:
    """`scan --batch-size 4`: a valid report whose rows carry their batch, with each
    batch's blocks adding up to the batch's I²F (and B=1 is the per-sample scan)."""
    out = tmp_path / "b4.json"
    args = ["scan", "--demo", "--first", "1200", "--per-class", "1", "--max-iter", "8",
            "--n-probes", "3", "--no-progress", "--scores", "grad_norm,i2f"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--batch-size", "4", "--json", str(out)])
    assert result.exit_code in (0, 1), result.output  # 1: the demo's own gate (i2f < 0.05)
    doc = json.loads(out.read_text())
    assert schema_errors(doc, load_schema("report")) == []
    batches = doc["summary"]["batches"]
    assert batches == {"batch_size": 4, "num_batches": 3, "shuffle": True, "drop_last": False,
                       "dropped_samples": 0}  # fmt: skip
    groups: dict[int, list[dict]] = {}
    for row in doc["samples"]:
        groups.setdefault(row["diagnostics"]["batch"], []).append(row)
    assert sorted(len(g) for g in groups.values()) == [2, 4, 4]
    for rows in groups.values():
        total = sum(r["scores"]["i2f"] ** 2 for r in rows)
        assert total == pytest.approx(rows[0]["diagnostics"]["batch_i2f"] ** 2, rel=1e-4)
        assert len({r["scores"]["grad_norm"] for r in rows}) == 1


def test_scan_batch_size_zero_is_refused() -> None:
    result = CliRunner().invoke(app, ["scan", "--demo", "--batch-size", "0"])
    assert result.exit_code == 2
    assert "batch-size" in result.output
