"""``validate`` on batch gradients: the server sees the gradient of a client batch's mean
loss, the attacks reconstruct its B inputs jointly, and reconstructions are paired with
the originals by the assignment that maximises total PSNR.

Ground truths: today's per-sample validate (B = 1 must give its numbers exactly), the
true digits (an untrained DLG LeNet at B = 2 is recovered), a brute-force search over
every pairing, and the loader's own batches (:class:`Batching`).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_digits
from torch import Tensor, nn
from typer.testing import CliRunner

import leakaudit
from leakaudit.attacks import attack_config
from leakaudit.cli.app import app
from leakaudit.config import with_overrides
from leakaudit.metrics.quality import psnr
from leakaudit.models import build_model
from leakaudit.report.schema import load_schema, schema_errors
from leakaudit.scores.batching import Batching
from leakaudit.validation import validate
from leakaudit.validation.pairing import pair_batches
from tests.helpers_cli import assert_refused


def untrained_lenet() -> nn.Module:
    """The DLG LeNet (sigmoid, uniform init) for the 1×8×8 digits: easy to invert."""
    torch.manual_seed(0)
    model = build_model(
        "lenet", num_classes=10, in_channels=1, image_size=8, kwargs={"init": "dlg"}
    )
    return model.eval()


def digits(positions: list[int]) -> tuple[Tensor, Tensor]:
    """scikit-learn's 8×8 digits in [0, 1] and their labels."""
    d = load_digits()
    x = torch.tensor(d.images[positions] / 16.0, dtype=torch.float32)[:, None]
    return x, torch.tensor(d.target[positions]).long()


#: Short attacks that recover batches of two on the untrained LeNet (a few seconds).
CONFIGS = {
    "dlg": attack_config("dlg", "standard", iterations=300),
    "idlg": attack_config("idlg", "standard", iterations=300),
    "ig": attack_config("ig", "standard", iterations=400),
}


#: Shorter runs, for comparisons that do not need a recovery.
CHEAP = {a: replace(c, iterations=c.iterations // 4) for a, c in CONFIGS.items()}


def run(x: Tensor, y: Tensor, configs=CONFIGS, **kwargs):
    scores = {"grad_norm": torch.ones(x.shape[0], dtype=torch.float64)}  # ties: given order
    return validate(
        untrained_lenet(), x, y, scores, attack_configs=configs, attacks=list(configs),
        n_resamples=50, use_lpips=False, **kwargs,
    )  # fmt: skip


def test_batches_of_one_are_the_per_sample_validation_exactly() -> None:
    x, y = digits([0, 1, 2, 3, 4])
    per_sample = run(x, y, CHEAP, selection=list(range(5)))
    batched = run(x, y, CHEAP, client_batch=1)
    assert batched.indices.tolist() == per_sample.indices.tolist()
    for a in CONFIGS:
        assert torch.equal(batched.reconstructions[a], per_sample.reconstructions[a])
        for m, values in per_sample.quality[a].items():
            assert torch.equal(batched.quality[a][m], values), (a, m)
        assert torch.equal(batched.attack_labels[a], per_sample.attack_labels[a])
    assert batched.batch is not None and batched.batch.tolist() == [0, 1, 2, 3, 4]


def test_a_batch_of_two_is_recovered_and_the_pairing_follows_the_samples() -> None:
    x, y = digits([2, 3, 8, 9])
    straight = run(x, y, client_batch=2)
    assert straight.indices.tolist() == [0, 1, 2, 3]
    for a in CONFIGS:
        db = straight.quality[a]["psnr"]
        assert float(db.min()) > 25.0, (a, db)  # every digit recovered, not a blend
        torch.testing.assert_close(db, psnr(straight.reconstructions[a], x).double())
        assert straight.attack_labels[a].tolist() == y.tolist()
    # The attacker sees the same gradients and labels (sorted) in both orders, so its
    # candidates are the same: the pairing must move with the samples.
    swapped = run(x[[1, 0, 3, 2]], y[[1, 0, 3, 2]], {"idlg": CONFIGS["idlg"]}, client_batch=2)
    moved = straight.reconstructions["idlg"][[1, 0, 3, 2]]
    assert torch.equal(swapped.reconstructions["idlg"], moved)
    groups = straight.to_dict()["batches"]
    assert [g["indices"] for g in groups] == [[0, 1], [2, 3]]


def test_pairing_maximises_total_psnr_like_a_brute_force_search() -> None:
    x, _ = digits(list(range(12)))
    gen = torch.Generator().manual_seed(0)
    for trial in range(4):
        order = torch.randperm(4, generator=gen)
        # Blends of the originals with other digits: which is which is not obvious.
        w = 0.3 + 0.4 * torch.rand(4, 1, 1, 1, generator=gen)
        rec = w * x[:4][order] + (1 - w) * x[4 + 4 * (trial % 2) :][:4]
        paired = pair_batches(rec, x[:4], 4)
        best = max(
            itertools.permutations(range(4)),
            key=lambda p: float(psnr(rec[list(p)], x[:4]).sum()),
        )
        assert paired.tolist() == list(best)
    assert pair_batches(rec, x[:4], 1).tolist() == [0, 1, 2, 3]  # B = 1: no pairing


def test_api_batches_of_one_give_the_per_sample_psnr(tmp_path: Path) -> None:
    cfg = with_overrides(
        leakaudit.demo_config(),
        {"data.per_class": 1, "scores.select": ["grad_norm", "i2f"], "scores.risk_score": "i2f",
         "scores.max_iter": 4, "scores.n_probes": 1},
    )  # fmt: skip
    report = leakaudit.scan(cfg)
    fast = {"attacks": ["dlg"], "budget": "fast", "indices": [7, 2, 5]}
    alone = leakaudit.validate(cfg, report, **fast)
    ones = leakaudit.validate(cfg, report, batch_size=1, **fast)
    assert ones.indices.tolist() == alone.indices.tolist()
    assert torch.equal(ones.quality["dlg"]["psnr"], alone.quality["dlg"]["psnr"])
    assert ones.config["batch_threat"]["batch_size"] == 1
    with pytest.raises(leakaudit.InputError, match="batches of 1, not 2"):
        leakaudit.validate(cfg, report, batch_size=2, **fast)


def test_cli_validate_batch_size_writes_batches_and_refuses_bad_sizes(tmp_path: Path) -> None:
    scan_json, out = tmp_path / "scan.json", tmp_path / "val.json"
    common = ["--demo", "--per-class", "2", "--no-progress", "--batch-size", "4"]
    scan = ["scan", *common, "--max-iter", "4", "--n-probes", "4", "--scores", "grad_norm,i2f"]
    assert CliRunner().invoke(app, [*scan, "--json", str(scan_json)]).exit_code in (0, 1)
    args = ["validate", "--report", str(scan_json), "--batch-size", "4", "--attacks", "dlg,ig",
            "--budget", "fast", "--n-samples", "8", "--seed", "3", "--no-progress"]  # fmt: skip
    page = tmp_path / "val.html"
    result = CliRunner().invoke(app, [*args, "--json", str(out), "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert "gradient of each client batch of 4" in page.read_text()  # the page states B
    doc = json.loads(out.read_text())
    assert schema_errors(doc, load_schema("validation")) == []
    val = doc["validation"]
    assert val["batch_size"] == 4 and val["n_samples"] == 8
    loader = Batching(4, seed=0).batches(20)  # the demo's 20 samples, as scan batched them
    for group in val["batches"]:
        assert sorted(group["indices"]) == sorted(loader[group["batch"]])
        rows = [s for s in val["samples"] if s["batch"] == group["batch"]]
        assert [s["index"] for s in rows] == group["indices"]
        mean = sum(s["attacks"]["ig"]["psnr"] for s in rows) / 4
        assert group["attacks"]["ig"]["psnr_mean"] == pytest.approx(mean)
    assert {r["diagnostics"]["batch"] for r in json.loads(scan_json.read_text())["samples"]}
    # A report whose loader was seeded otherwise than the configuration's scored other
    # batches than the ones validate would attack: refused, not silently mismatched.
    other = json.loads(scan_json.read_text())
    other["config"]["scores"]["seed"] = 5
    cfg = with_overrides(leakaudit.demo_config(), {"data.per_class": 2, "scores.batch_size": 4})
    with pytest.raises(leakaudit.InputError, match=r"scores\.seed = 5, not 0"):
        leakaudit.validate(cfg, other, attacks=["dlg"], budget="fast", n_samples=4)
    bad = ["validate", "--demo", "--per-class", "2", "--no-progress", "--batch-size"]
    assert_refused(CliRunner().invoke(app, [*bad, "0"]), "--batch-size 0")
    assert_refused(CliRunner().invoke(app, [*bad, "21"]), "--batch-size 21", "20 samples")


def test_batch_rows_are_the_loaders_whole_batches() -> None:
    from leakaudit.validation.batched import batch_rows

    batching = Batching(4, seed=2)
    loader = batching.batches(22)  # five whole batches and one of two
    positions = torch.arange(21, -1, -1)  # the table lists the dataset backwards
    risk = torch.linspace(0.0, 1.0, 22, dtype=torch.float64)
    rows, numbers = batch_rows(positions, risk, batching, 22, n_samples=9, indices=None, seed=0)
    assert len(rows) == 12 and len(set(numbers.tolist())) == 3  # 9 rounded up to batches
    for k in set(numbers.tolist()):
        assert len(loader[k]) == 4
        assert positions[rows[numbers == k]].tolist() == loader[k]
    last = loader[-1][0]  # in the batch of two: never attacked
    with pytest.raises(ValueError, match=f"sample {last} is not in a whole scored batch"):
        batch_rows(positions, risk, batching, 22, n_samples=9, indices=[last], seed=0)
    wanted = [loader[3][1], loader[0][2], loader[3][0]]
    rows, numbers = batch_rows(positions, risk, batching, 22, n_samples=9, indices=wanted, seed=0)
    assert numbers.tolist() == [3] * 4 + [0] * 4
    assert positions[rows].tolist() == loader[3] + loader[0]
    with pytest.raises(ValueError, match="larger than the 22 samples"):
        batch_rows(positions, risk, Batching(23), 22, n_samples=9, indices=None, seed=0)


def test_a_calibration_and_batch_scores_do_not_mix(tmp_path: Path) -> None:
    # calibrate attacks single samples, so its map reads per-sample scores: a batch scan
    # may not use one, and calibrate refuses to calibrate batch scores it never attacked.
    batched = with_overrides(leakaudit.demo_config(), {"scores.batch_size": 4})
    with pytest.raises(leakaudit.ConfigError, match="calibrate attacks single samples"):
        leakaudit.api.calibrate(batched, n_samples=16, attacks=["dlg"], budget="fast")
    with pytest.raises(leakaudit.ConfigError, match="a calibration maps the scores of one"):
        with_overrides(batched, {"scores.calibration": str(tmp_path / "calibration.json")})
