"""Report assembly and formats, on a hand-built ScoreResult with known answers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from leakaudit.config import config_from_dict
from leakaudit.errors import InputError
from leakaudit.report.build import build_report
from leakaudit.report.files import check_writable, write_atomic
from leakaudit.report.formats.json_format import render_json
from leakaudit.report.formats.markdown import render_markdown
from leakaudit.report.ranking import distribution, risk_percentiles, risk_ranks
from leakaudit.report.schema import schema_errors
from leakaudit.scores.i2f import sigma_needed
from leakaudit.scores.options import ScoreResult

N = 6
LAVP = torch.tensor([3.0, 1.0, 2.0, 1.0, float("nan"), 5.0], dtype=torch.float64)
GRAD = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.2, 0.4], dtype=torch.float64)
I2F = torch.tensor([0.4, 2.0, 0.1, 3.0, 1.0, 0.7], dtype=torch.float64)
UNIT = I2F / 0.01  # I²F at σ = 1 when the configured defence has σ = 0.01


def hand_result() -> ScoreResult:
    return ScoreResult(
        indices=torch.arange(N),
        labels=torch.tensor([0, 1, 2, 0, 1, 2]),
        scores={"grad_norm": GRAD, "lavp_gm": LAVP, "i2f": I2F},
        diagnostics={
            "converged": torch.tensor([True, True, False, True, True, True]),
            "i2f_unit_sigma": UNIT,
            "lanczos_steps": torch.tensor([5, 5, 80, 5, 5, 5]),
        },
        backend="func",
        device="cpu",
    )


def hand_report(**cfg):
    config = config_from_dict(
        {
            "scores": {"select": ["grad_norm", "lavp_gm", "i2f"], "risk_score": "lavp_gm"},
            "defense": {"target_error": 0.5},
            **cfg,
        }
    )
    ids = [f"img/{i}.png" for i in range(N)]
    info = {"name": "lenet", "num_classes": 3, "parameters": 10, "checkpoint": None}
    return build_report(
        hand_result(),
        ids=ids,
        config=config,
        model_info=info,
        dataset_info={"kind": "tensors", "num_samples": N},
        seconds=2.0,
    )


def brute_percentile(values: list[float], k: int, lower_is_riskier: bool) -> float:
    """Share of the other finite samples that are strictly safer, ties counting half."""
    r = [(-v if lower_is_riskier else v) for v in values if not np.isnan(v)]
    mine = -values[k] if lower_is_riskier else values[k]
    below = sum(x < mine for x in r)
    ties = sum(x == mine for x in r) - 1
    return 100.0 * (below + 0.5 * ties) / (len(r) - 1)


@pytest.mark.parametrize("lower", [True, False])
def test_ranks_and_percentiles_against_brute_force(lower: bool) -> None:
    vals = LAVP.tolist()
    direction = "lower_is_riskier" if lower else "higher_is_riskier"
    ranks = risk_ranks(np.array(vals), direction)
    pct = risk_percentiles(np.array(vals), direction)
    order = sorted(
        range(N), key=lambda k: (np.isnan(vals[k]), -vals[k] if not lower else vals[k], k)
    )
    assert [int(ranks[k]) for k in order] == list(range(1, N + 1))
    for k in range(N):
        if np.isnan(vals[k]):
            assert np.isnan(pct[k]) and ranks[k] == N
        else:
            assert pct[k] == pytest.approx(brute_percentile(vals, k, lower))


def test_distribution_matches_numpy() -> None:
    vals = np.array([1.0, 4.0, np.inf, 2.0, 8.0])
    st = distribution(vals)
    finite = np.array([1.0, 4.0, 2.0, 8.0])
    assert st["count"] == 5 and st["non_finite"] == 1
    assert st["median"] == np.median(finite) and st["q25"] == np.quantile(finite, 0.25)
    assert (st["min"], st["max"], st["mean"]) == (1.0, 8.0, finite.mean())
    assert distribution(np.array([np.nan]))["median"] is None


def test_build_report_ranks_gate_and_whatif() -> None:
    rep = hand_report(gate={"rules": [{"score": "i2f", "threshold": 0.5, "max_fraction": 0.2}]})
    by_id = {s.id: s for s in rep.samples}
    # lavp_gm, lower is riskier: 1.0 (ids 1, 3: tie kept in dataset order), 2.0, 3.0, 5.0, NaN.
    assert [s.id for s in rep.ranked()] == [f"img/{i}.png" for i in (1, 3, 2, 0, 5, 4)]
    assert by_id["img/1.png"].percentile == by_id["img/3.png"].percentile == 87.5
    assert by_id["img/4.png"].percentile is None or np.isnan(by_id["img/4.png"].percentile)
    assert rep.risk == {
        "score": "lavp_gm",
        "direction": "lower_is_riskier",
        "direction_source": "default",
        "calibrated": False,
    }
    # σ needed = τ / I²F(σ=1) = 0.5 / (i2f / 0.01); the dataset needs the largest.
    want = 0.5 * 0.01 / I2F.numpy()
    assert [s.sigma_needed for s in rep.samples] == pytest.approx(want)
    assert rep.whatif["sigma_dataset"] == pytest.approx(want.max())
    assert rep.whatif["below_target_under_defense"] == 2  # i2f 0.4 and 0.1 < τ = 0.5
    # Gate: 2 of 6 samples have i2f < 0.5 → 33% > 20%: fail, offending in dataset order.
    assert not rep.gate.passed and rep.gate.offending == ["img/0.png", "img/2.png"]
    assert rep.summary["non_converged"] == ["img/2.png"]
    assert rep.summary["samples_per_second"] == 3.0


def test_direction_override_is_reported() -> None:
    rep = hand_report(
        scores={
            "select": ["grad_norm", "lavp_gm", "i2f"],
            "risk_score": "lavp_gm",
            "directions": {"lavp_gm": "higher_is_riskier"},
        }
    )
    assert rep.risk["direction"] == "higher_is_riskier" and rep.risk["direction_source"] == "config"
    assert rep.ranked()[0].id == "img/5.png"


def test_json_is_strict_and_matches_the_schema() -> None:
    text = render_json(hand_report())
    doc = json.loads(text)  # strict: NaN became null
    assert "NaN" not in text
    assert schema_errors(doc) == []
    assert doc["samples"][4]["percentile"] is None
    broken = json.loads(text)
    broken["samples"][0]["rank"] = "1"
    del broken["gate"]["passed"]
    broken["surprise"] = 1
    errs = schema_errors(broken)
    assert any("samples[0].rank" in e for e in errs)
    assert any("missing key 'passed'" in e for e in errs)
    assert any("unexpected key 'surprise'" in e for e in errs)


def test_markdown_has_verdict_table_and_rules() -> None:
    rep = hand_report(gate={"rules": [{"score": "i2f", "threshold": 0.5}]})
    md = render_markdown(rep, top_k=3)
    assert md.startswith("## leakaudit scan: ❌ gate failed")
    rows = [line for line in md.splitlines() if line.startswith("| 1 |")]
    assert rows and "`img/1.png`" in rows[0]
    assert "| i2f < 0.5 for at most 0% | 2/6 | 33.3% | **fail** |" in md
    assert "`img/0.png`, `img/2.png`" in md


def test_sigma_needed_handles_zero_and_nan() -> None:
    out = sigma_needed(np.array([2.0, 0.0, np.nan]), 1.0)
    assert out[0] == 0.5 and np.isnan(out[1]) and np.isnan(out[2])


def test_atomic_write_replaces_whole_file_or_nothing(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_atomic(path, "old")
    with pytest.raises(TypeError):
        write_atomic(path, 123)  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.json"]  # no temporary files left behind
    write_atomic(path, "new")
    assert path.read_text() == "new"


def test_check_writable(tmp_path: Path) -> None:
    check_writable(tmp_path / "new.json")
    with pytest.raises(InputError, match="does not exist"):
        check_writable(tmp_path / "missing" / "r.json")
    with pytest.raises(InputError, match="is a directory"):
        check_writable(tmp_path)


def test_terminal_table_is_compact_on_narrow_terminals() -> None:
    from rich.console import Console

    from leakaudit.report.formats.table import top_table

    result = hand_result()
    result.scores["lavp_l2_max"] = 2 * GRAD
    config = config_from_dict(
        {
            "scores": {
                "select": ["grad_norm", "lavp_l2_max", "lavp_gm", "i2f"],
                "risk_score": "lavp_gm",
            }
        }
    )
    rep = build_report(result, ids=[f"img/{i}.png" for i in range(N)], config=config,
                       model_info={}, dataset_info={}, seconds=1.0)  # fmt: skip
    for width, wide in ((200, True), (100, False)):
        console = Console(width=width, record=True)
        console.print(top_table(rep, 3, width))
        text = " ".join(console.export_text().split())
        assert all(name in text for name in ("lavp_gm", "grad_norm", "i2f", "img/1.png"))
        assert ("lavp_l2_max" in text) == wide
        assert ("1 more scores in the JSON report" in text) == (not wide)
