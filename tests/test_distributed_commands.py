"""validate, calibrate and batch scans under torchrun: the same output as one process;
results cross between ranks as tensors, never pickled (docs/scaling.md)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
from torch import Tensor
from typer.testing import CliRunner

import leakaudit
from leakaudit.api import load_inputs, scan
from leakaudit.attacks import attack_config
from leakaudit.cli import app
from leakaudit.config import with_overrides
from leakaudit.demo import DEMO_CHECKPOINT, demo_config
from leakaudit.distributed.exchange import Payload, PayloadError, decode, encode
from leakaudit.distributed.rows import payload_rows, rows_payload
from leakaudit.errors import ConfigError, RuntimeFailure
from leakaudit.report.formats import FormatName
from leakaudit.scores.options import ScoreResult
from leakaudit.validation.run import AttackUnit, UnitResult, run_here, validate
from tests.helpers_cli import assert_refused
from tests.helpers_torchrun import run_torchrun

SCHEMAS = Path(leakaudit.__file__).parent / "schemas"

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
BATCH_SETTINGS = {
    "data.first": 18, "scores.batch_size": 4, "scores.select": ["grad_norm", "lavp_l2_max", "i2f"],
    "scores.max_iter": 8, "scores.n_probes": 4, "scores.chunk_size": 1,
}  # fmt: skip


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


def _raw(header: str, body: bytes = b"") -> Tensor:
    """A payload made by hand: its header's length, the header, the body."""
    data = len(header.encode()).to_bytes(8, "little") + header.encode() + body
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


@pytest.mark.parametrize(
    "header, body",
    [
        ('{"meta": {}, "tensors": [7]}', b""),  # an entry that is not an object
        ('{"meta": [], "tensors": []}', b""),  # meta not an object
        ('{"meta": {}, "tensors": [{"name": "x", "dtype": "int64", "shape": [Infinity], '
         '"offset": 0}]}', b""),  # an infinite shape
        ("[" * 100_000 + "]" * 100_000, b""),  # nesting deeper than the parser's stack
        ('{"meta": {}, "tensors": [{"name": "b", "dtype": "bool", "shape": [2], '
         '"offset": 0}]}', b"\x01\x07"),  # a boolean that is neither 0 nor 1
    ],
)
def test_a_hostile_payload_is_a_payload_error_not_a_crash(header: str, body: bytes) -> None:
    with pytest.raises(PayloadError) as caught:
        decode(_raw(header, body))
    assert isinstance(caught.value, RuntimeFailure)  # exit 3: the job failed, not the input


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
    inputs = load_inputs(with_overrides(demo_config(), {"data.first": 4}))
    x = torch.stack([torch.as_tensor(inputs.dataset[i][0]) for i in range(4)])
    y = torch.tensor([int(inputs.dataset[i][1]) for i in range(4)])
    scores = {"grad_norm": torch.linspace(0, 1, 4, dtype=torch.float64)}
    seen: list[AttackUnit] = []

    def backwards(units: list[AttackUnit], run: Any) -> list[UnitResult]:
        seen.extend(units)
        done = {k: run(units[k]) for k in reversed(range(len(units)))}
        return [done[k] for k in range(len(units))]

    short = {a: attack_config(a, "fast", iterations=10) for a in ("dlg", "idlg")}
    args: dict[str, Any] = {"attacks": ["dlg", "idlg"], "attack_configs": short, "batch_size": 2,
                            "n_samples": 4, "n_resamples": 20, "use_lpips": False}  # fmt: skip
    one = validate(inputs.model, x, y, scores, spread=run_here, **args)
    other = validate(inputs.model, x, y, scores, spread=backwards, **args)
    assert [(u.attack, u.batch, u.samples) for u in seen] == [
        (a, k, 2) for a in ("dlg", "idlg") for k in range(2)
    ]
    for a in ("dlg", "idlg"):
        assert torch.equal(one.reconstructions[a], other.reconstructions[a])
        assert torch.equal(one.matching_loss[a], other.matching_loss[a])
    assert [r.to_dict() for r in one.agreement] == [r.to_dict() for r in other.agreement]


def _without(doc: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in keys}


def _fast_config(path: Path) -> Path:
    """The demo model on 6 digits, Lanczos cut to 8 steps: the cheapest calibration; chunks
    of 2 samples spread its scoring over both ranks (rank 0: 4 samples, rank 1: 2)."""
    path.write_text(
        "model: {name: lenet, num_classes: 10, in_channels: 1, image_size: 8, "
        f"checkpoint: '{DEMO_CHECKPOINT}'}}\n"
        "data: {kind: digits, mean: [0.3], std: [0.4], first: 6}\n"
        "scores: {max_iter: 8, n_probes: 2, chunk_size: 2}\n"
    )
    return path


def _single_process(tmp_path: Path, calibrate: list[str]) -> dict[str, Any]:
    """The three commands' outputs in this process: validate, calibrate, batch scan."""
    one = CliRunner().invoke(app, [*VALIDATE, "--json", str(tmp_path / "v1.json"),
                                   "--no-progress"])  # fmt: skip
    assert one.exit_code == 0, one.output
    cal = CliRunner().invoke(app, [*calibrate, "-o", str(tmp_path / "c1.json"), "--no-progress"])
    assert cal.exit_code == 0, cal.output
    batch = scan(with_overrides(demo_config(), BATCH_SETTINGS))
    return {
        "validation": json.loads((tmp_path / "v1.json").read_text())["validation"],
        "calibration": json.loads((tmp_path / "c1.json").read_text()),
        "batch": json.loads(FormatName.json.to_format().render(batch)),
    }


@pytest.mark.slow
def test_torchrun_validate_calibrate_and_batch_scan_equal_one_process(tmp_path: Path) -> None:
    # Thresholds so low that every sample counts as recovered: the whole fit is compared.
    calibrate = ["calibrate", "--config", str(_fast_config(tmp_path / "c.yaml")), "--n-samples",
                 "6", "--folds", "2", "--attacks", "dlg,idlg", "--budget", "fast",
                 "--min-psnr", "1", "--min-gain", "-50"]  # fmt: skip
    single = _single_process(tmp_path, calibrate)
    # One torchrun job (one start-up) runs the three commands; rank 0's progress bars on.
    jobs = [[*VALIDATE, "--json", "v2.json"], [*calibrate, "-o", "c2.json"],
            [*BATCH_SCAN, "--json", "b2.json"]]  # fmt: skip
    script = str(Path(__file__).with_name("torchrun_job.py"))
    run = run_torchrun(tmp_path, [json.dumps(jobs)], program=[script])
    assert run.returncode == 0, run.stderr[-3000:]
    assert re.findall(r"^exit (\d+)$", run.stdout, re.M) == ["0", "0", "1"]  # gate fails
    assert run.stdout.count("strongest rank correlation") == 2  # once per attack: rank 0
    assert run.stdout.count("calibration written") == 1 and run.stderr.count("gate failed") == 1
    outputs = ["b2.json", "c.yaml", "c1.json", "c2.json", "v1.json", "v2.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == outputs  # no partial results
    for name, schema in [("v2.json", "validation"), ("c2.json", "calibration")]:
        doc = json.loads((tmp_path / name).read_text())  # the distributed sections included
        jsonschema.validate(doc, json.loads((SCHEMAS / f"{schema}.schema.json").read_text()))
    _same_validation(single["validation"], json.loads((tmp_path / "v2.json").read_text()))
    _same_calibration(single["calibration"], json.loads((tmp_path / "c2.json").read_text()))
    _same_batch_scan(single["batch"], json.loads((tmp_path / "b2.json").read_text()))


def _same_validation(single: dict[str, Any], merged: dict[str, Any]) -> None:
    merged = merged["validation"]
    assert _without(merged, "seconds", "distributed") == _without(single, "seconds", "distributed")
    assert single["distributed"]["world_size"] == 1
    dist = merged["distributed"]
    assert dist["world_size"] == 2 and dist["process_group"] == "gloo"
    assert [(r["rank"], r["units"], r["samples"]) for r in dist["ranks"]] == [(0, 1, 4), (1, 1, 4)]
    assert all(r["samples_per_second"] > 0 for r in dist["ranks"])


def _same_calibration(single: dict[str, Any], merged: dict[str, Any]) -> None:
    assert single["status"] == "calibrated"
    dist = merged["attack"].pop("distributed")
    assert single["attack"].pop("distributed")["world_size"] == 1
    assert _without(merged, "created") == _without(single, "created")
    assert [(r["units"], r["samples"]) for r in dist["ranks"]] == [(1, 6), (1, 6)]


def _same_batch_scan(single: dict[str, Any], merged: dict[str, Any]) -> None:
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


def test_a_sharded_result_keeps_the_work_it_took() -> None:
    # Merging and reordering rows keeps the engine's product counters (they were dropped).
    from leakaudit.api import score_options
    from leakaudit.distributed.subsets import score_positions
    from leakaudit.scores.engine import score_samples

    cfg = with_overrides(demo_config(), {"data.first": 6, "scores.select": ["grad_norm", "i2f"]})
    inputs, options = load_inputs(cfg), score_options(cfg)
    sharded = score_positions(inputs.model, inputs.dataset, range(6), options)
    alone = score_samples(inputs.model, inputs.dataset, options)
    assert sharded.products == alone.products > 0
    assert torch.equal(sharded.scores["i2f"], alone.scores["i2f"])
