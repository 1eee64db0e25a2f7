"""validate, calibrate and batch scans under torchrun: the same output as one process;
results cross between ranks as tensors, never pickled (docs/scaling.md)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import leakaudit
from leakaudit.api import load_inputs, scan
from leakaudit.cli import app
from leakaudit.config import with_overrides
from leakaudit.demo import DEMO_CHECKPOINT, demo_config
from leakaudit.distributed.exchange import Payload, PayloadError, decode, encode
from leakaudit.distributed.rows import payload_rows, rows_payload
from leakaudit.errors import ConfigError
from leakaudit.scores.options import ScoreResult
from leakaudit.validation.run import AttackUnit, UnitResult, run_here, validate
from tests.helpers_cli import assert_refused
from tests.helpers_torchrun import run_torchrun

#: 6 digits, two cheap attacks (two units: one per rank).
VALIDATE = [
    "validate", "--demo", "--first", "6", "--attacks", "dlg,idlg", "--budget", "fast",
    "--n-samples", "4",
]  # fmt: skip
#: 18 digits in batches of 4 (four full batches and one of 2: two runs), chunks of one batch.
BATCH_SCAN = [
    "scan", "--demo", "--first", "18", "--batch-size", "4", "--scores",
    "grad_norm,lavp_l2_max,i2f", "--max-iter", "8", "--n-probes", "4", "--chunk-size", "1",
]  # fmt: skip


def _rows() -> ScoreResult:
    return ScoreResult(
        indices=torch.tensor([4, 0, 7]),
        labels=torch.tensor([1, 2, 3]),
        scores={"i2f": torch.tensor([0.1, float("nan"), -float("inf")], dtype=torch.float64)},
        diagnostics={
            "converged": torch.tensor([True, False, True]),
            "i2f_blocks": torch.randn(3, 4, generator=torch.Generator().manual_seed(0)),
        },
        backend="func",
        device="cpu",
        seconds=1.5,
        products=12,
    )


def test_rows_cross_as_bytes_bit_for_bit() -> None:
    rows, digests = _rows(), torch.arange(96, dtype=torch.uint8).reshape(3, 32)
    sent = rows_payload(rows, {"digests": digests}, {"rank": 1, "rate": None})
    back, extra, meta = payload_rows(decode(encode(sent)))
    assert back is not None and meta == {"rank": 1, "rate": None}
    assert torch.equal(extra["digests"], digests)
    for name in ("indices", "labels"):
        assert torch.equal(getattr(back, name), getattr(rows, name))
    assert torch.equal(back.scores["i2f"].view(torch.int64), rows.scores["i2f"].view(torch.int64))
    for k, v in rows.diagnostics.items():
        assert back.diagnostics[k].dtype == v.dtype and torch.equal(back.diagnostics[k], v)
    assert (back.backend, back.seconds, back.products) == ("func", 1.5, 12)
    empty, _, _ = payload_rows(decode(encode(rows_payload(None, {}, {}))))
    assert empty is None


@pytest.mark.parametrize(
    "spoil",
    [
        lambda b: b[:20],  # cut short
        lambda b: b.replace(b'"dtype": "int64"', b'"dtype": "object"'),
        lambda b: b.replace(b'"shape": [2]', b'"shape": [9000]'),
        lambda b: b.replace(b'"meta"', b'"mota"'),
    ],
)
def test_a_bad_payload_is_refused(spoil: Any) -> None:
    blob = bytes(encode(Payload({"n": 1}, {"x": torch.tensor([1, 2])})).tolist())
    bad = spoil(blob)
    assert bad != blob
    with pytest.raises(PayloadError):
        decode(torch.frombuffer(bytearray(bad), dtype=torch.uint8))


#: torch.distributed's collectives that pickle: what they receive is unpickled.
PICKLING = re.compile(r"(all_gather|gather|broadcast|scatter|send|recv)_object(_list)?")


def test_no_rank_exchanges_pickled_objects() -> None:
    # A rank could run code on rank 0 through a pickle. No module of the package calls
    # the pickling collectives; distributed/ does not import pickle or call torch.load.
    package = Path(leakaudit.__file__).parent
    found = []
    for path in package.rglob("*.py"):
        ours = path.parent.name == "distributed"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.relative_to(package)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Attribute | ast.Name | ast.alias):
                name = {ast.Attribute: "attr", ast.Name: "id", ast.alias: "name"}[type(node)]
                if PICKLING.fullmatch(getattr(node, name)):
                    found.append(f"{where}: {getattr(node, name)}")
            if ours and isinstance(node, ast.alias) and node.name in {"pickle", "dill"}:
                found.append(f"{where}: import {node.name}")
            if ours and isinstance(node, ast.Attribute) and node.attr == "load":
                found.append(f"{where}: .load")
    assert found == []


def test_attack_units_are_independent_of_where_and_in_which_order_they_run() -> None:
    # What makes sharding exact: each unit (attack × batch) is seeded alone, so units
    # run in any order (or on another rank) give the results of one run.
    inputs = load_inputs(with_overrides(demo_config(), {"data.first": 6}))
    x = torch.stack([torch.as_tensor(inputs.dataset[i][0]) for i in range(6)])
    y = torch.tensor([int(inputs.dataset[i][1]) for i in range(6)])
    scores = {"grad_norm": torch.linspace(0, 1, 6, dtype=torch.float64)}
    seen: list[AttackUnit] = []

    def backwards(units: list[AttackUnit], run: Any) -> list[UnitResult]:
        seen.extend(units)
        done = {k: run(units[k]) for k in reversed(range(len(units)))}
        return [done[k] for k in range(len(units))]

    args: dict[str, Any] = {"attacks": ["dlg", "idlg"], "budget": "fast", "batch_size": 2,
                            "n_samples": 6, "n_resamples": 50, "use_lpips": False}  # fmt: skip
    one = validate(inputs.model, x, y, scores, spread=run_here, **args)
    other = validate(inputs.model, x, y, scores, spread=backwards, **args)
    assert [(u.attack, u.batch, u.samples) for u in seen] == [
        (a, k, 2) for a in ("dlg", "idlg") for k in range(3)
    ]
    for a in ("dlg", "idlg"):
        assert torch.equal(one.reconstructions[a], other.reconstructions[a])
        assert torch.equal(one.matching_loss[a], other.matching_loss[a])
    assert [r.to_dict() for r in one.agreement] == [r.to_dict() for r in other.agreement]


def _without_timing(doc: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in keys}


@pytest.mark.slow
def test_torchrun_validate_equals_one_process(tmp_path: Path) -> None:
    one = CliRunner().invoke(app, [*VALIDATE, "--json", str(tmp_path / "one.json"),
                                   "--no-progress"])  # fmt: skip
    assert one.exit_code == 0, one.output
    run = run_torchrun(tmp_path, [*VALIDATE, "--json", "two.json"])  # rank 0's progress bar on
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("strongest rank correlation") == 2  # one sentence per attack, once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.json", "two.json"]
    single = json.loads((tmp_path / "one.json").read_text())["validation"]
    merged = json.loads((tmp_path / "two.json").read_text())["validation"]
    timing = ("seconds", "distributed")
    assert _without_timing(merged, *timing) == _without_timing(single, *timing)
    assert single["distributed"]["world_size"] == 1
    dist = merged["distributed"]
    assert dist["world_size"] == 2 and dist["process_group"] == "gloo"
    assert [(r["rank"], r["units"], r["samples"]) for r in dist["ranks"]] == [(0, 1, 4), (1, 1, 4)]
    assert all(r["samples_per_second"] > 0 for r in dist["ranks"])


def _fast_config(path: Path) -> Path:
    """The demo model on 6 digits, Lanczos cut to 8 steps: the cheapest calibration."""
    path.write_text(
        "model: {name: lenet, num_classes: 10, in_channels: 1, image_size: 8, "
        f"checkpoint: '{DEMO_CHECKPOINT}'}}\n"
        "data: {kind: digits, mean: [0.3], std: [0.4], first: 6}\n"
        "scores: {max_iter: 8, n_probes: 2}\n"
    )
    return path


@pytest.mark.slow
def test_torchrun_calibrate_equals_one_process(tmp_path: Path) -> None:
    # Thresholds so low that every sample counts as recovered: the whole fit is compared.
    args = ["calibrate", "--config", str(_fast_config(tmp_path / "c.yaml")), "--n-samples", "6",
            "--folds", "2", "--attacks", "dlg,idlg", "--budget", "fast", "--min-psnr", "1",
            "--min-gain", "-50"]  # fmt: skip
    one = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "one.json"), "--no-progress"])
    assert one.exit_code == 0, one.output
    run = run_torchrun(tmp_path, [*args, "-o", "two.json"])
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("calibration written") == 1
    single = json.loads((tmp_path / "one.json").read_text())
    merged = json.loads((tmp_path / "two.json").read_text())
    assert single["status"] == "calibrated"
    dist = merged["attack"].pop("distributed")
    assert single["attack"].pop("distributed")["world_size"] == 1
    assert _without_timing(merged, "created") == _without_timing(single, "created")
    assert [(r["units"], r["samples"]) for r in dist["ranks"]] == [(1, 6), (1, 6)]


@pytest.mark.slow
def test_torchrun_batch_scan_equals_one_process(tmp_path: Path) -> None:
    cfg = with_overrides(demo_config(), {"data.first": 18, "scores.batch_size": 4,
        "scores.select": ["grad_norm", "lavp_l2_max", "i2f"], "scores.max_iter": 8,
        "scores.n_probes": 4, "scores.chunk_size": 1})  # fmt: skip
    from leakaudit.report.formats import FormatName

    single = json.loads(FormatName.json.to_format().render(scan(cfg)))
    run = run_torchrun(tmp_path, [*BATCH_SCAN, "--json", "report.json"])  # progress bar on
    assert run.returncode == 1, run.stderr[-2000:]  # the demo's gate fails, on rank 0 only
    assert run.stderr.count("gate failed") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no partials
    merged = json.loads((tmp_path / "report.json").read_text())
    assert merged["samples"] == single["samples"]  # every batch's scores, bitwise
    assert merged["risk"] == single["risk"]
    assert merged["summary"]["batches"] == single["summary"]["batches"]
    dist = merged["summary"]["distributed"]
    # 4 batches of 4 in chunks of one batch: 2 per rank; the last batch of 2 on rank 0.
    assert dist["world_size"] == 2
    assert [(r["rank"], r["samples"]) for r in dist["ranks"]] == [(0, 10), (1, 8)]
    assert single["summary"]["distributed"]["ranks"][0]["samples"] == 18


@pytest.mark.parametrize("flags", [["--resume"], ["--partial", "p.pt"]])
def test_a_batch_scan_refuses_partial_results(flags: list[str], tmp_path: Path) -> None:
    args = [*BATCH_SCAN, "--json", str(tmp_path / "r.json"), *flags]
    result = CliRunner().invoke(app, args)
    assert_refused(result, "--resume/--partial", "batch scan")
    assert list(tmp_path.iterdir()) == []
    cfg = with_overrides(demo_config(), {"scores.batch_size": 4})
    with pytest.raises(ConfigError, match="keeps no partial results"):
        scan(cfg, partial_path=tmp_path / "r.json.partial.pt")
