"""A default scan computes only the scores it reads (issue 11): the risk score, the gate
rules' scores and the calibration's; ``--scores all`` computes all eight, an explicit list
its own, and the report says what was computed and why."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from leakaudit import api, distributed
from leakaudit.calibration.document import architecture_signature
from leakaudit.calibration.fit import fit_calibration
from leakaudit.calibration.recovery import recovery
from leakaudit.cli import app
from leakaudit.config import GateRule, ScanConfig, with_overrides
from leakaudit.config.selection import resolve_selection
from leakaudit.demo import demo_config
from leakaudit.errors import ConfigError
from leakaudit.report.schema import schema_errors
from leakaudit.scores.names import ALL_SCORES, GRAD_NORM, LAVP_COS_MAX, LAVP_GM
from leakaudit.scores.plan import Plan
from tests.helpers_cli import assert_refused

#: 20 demo digits (2 per class), quick solver settings, no gate rule.
SMALL = {
    "data.per_class": 2,
    "scores.max_iter": 12,
    "scores.n_probes": 2,
    "gate.rules": [],
}
FAST = ["--per-class", "2", "--max-iter", "12", "--n-probes", "2", "--no-progress"]


def small(**overrides: object) -> ScanConfig:
    return with_overrides(demo_config(), {**SMALL, **overrides})


def run(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def recorded(monkeypatch) -> list:
    """The engine's options and results of every scan, as ``api.scan`` calls it (through
    :func:`leakaudit.distributed.score_sharded`)."""
    calls: list = []
    real = distributed.score_samples

    def spy(model, data, options, **kwargs):
        result = real(model, data, options, **kwargs)
        calls.append((options, result))
        return result

    monkeypatch.setattr(distributed, "score_samples", spy)
    return calls


def test_default_scan_computes_only_the_gradient_norm(recorded) -> None:
    report = api.scan(small())
    ((options, result),) = recorded
    assert options.scores == (GRAD_NORM,)
    plan = Plan.of(options)
    assert not (plan.lanczos or plan.slq or plan.trace)
    # No Lanczos ran: one gradient per sample is all the products there are.
    assert "lanczos_steps" not in result.diagnostics
    assert result.products <= 2 * len(report.samples)
    assert all(list(s.scores) == [GRAD_NORM] for s in report.samples)
    assert list(report.summary["scores"]) == [GRAD_NORM]
    assert report.to_dict()["scores"] == {
        "requested": "auto",
        "computed": [GRAD_NORM],
        "reasons": {GRAD_NORM: ["risk"]},
    }
    assert schema_errors(report.to_dict()) == []
    assert report.computed_note() == (
        "computed: grad_norm (risk score); use --scores all for every score"
    )


def test_all_computes_every_score_and_matches_the_default_on_the_gradient_norm(
    recorded,
) -> None:
    every = api.scan(small(**{"scores.select": "all"}))
    default = api.scan(small())
    assert recorded[0][0].scores == ALL_SCORES
    assert list(every.summary["scores"]) == list(ALL_SCORES)
    reasons = {n: ["requested"] for n in ALL_SCORES}
    assert every.to_dict()["scores"]["reasons"] == {**reasons, GRAD_NORM: ["requested", "risk"]}
    # The selection changes what is computed, not the numbers.
    assert [s.scores[GRAD_NORM] for s in every.samples] == [
        s.scores[GRAD_NORM] for s in default.samples
    ]
    assert [s.rank for s in every.samples] == [s.rank for s in default.samples]
    assert "use --scores all" not in (every.computed_note() or "")


def test_a_gate_rule_pulls_its_score_in() -> None:
    cfg = small(**{"gate.rules": [{"score": LAVP_COS_MAX, "threshold": 1e-9}]})
    selection = resolve_selection(cfg)
    assert selection.computed == (GRAD_NORM, LAVP_COS_MAX)
    assert selection.reasons[LAVP_COS_MAX] == ("gate:lavp_cos_max<1e-09",)
    report = api.scan(cfg)
    assert list(report.samples[0].scores) == [GRAD_NORM, LAVP_COS_MAX]
    assert report.gate.rules[0].considered == len(report.samples)
    # The demo's own rule reads i2f: the default demo scan computes it, and says why.
    demo = resolve_selection(demo_config())
    assert demo.computed == (GRAD_NORM, "i2f") and demo.reasons["i2f"] == ("gate:i2f<0.05",)


def test_risk_score_and_a_gate_rule_above() -> None:
    cfg = small(**{"scores.risk_score": LAVP_GM})
    cfg.gate.rules = [GateRule(score=GRAD_NORM, percentile=90, risky_when="above")]
    selection = resolve_selection(cfg)
    assert selection.computed == (GRAD_NORM, LAVP_GM)
    assert selection.reasons == {GRAD_NORM: ("gate:grad_norm>p90",), LAVP_GM: ("risk",)}


def test_cli_all_and_explicit_lists(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    res = run("scan", "--demo", "--scores", "all", "--json", str(out), *FAST)
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["scores"]["requested"] == "all" and doc["scores"]["computed"] == list(ALL_SCORES)
    assert list(doc["samples"][0]["scores"]) == list(ALL_SCORES)
    # The demo's gate reads i2f; a list without it is refused, naming the score and the fix.
    res = run("scan", "--demo", "--scores", "grad_norm", *FAST)
    assert_refused(res, "gate.rules[0].score", "'i2f'", "add i2f to --scores")
    res = run("scan", "--demo", "--scores", "i2f,grad_norm", "--fail-on", "lavp_gm<1", *FAST)
    assert_refused(res, "'lavp_gm'", "add lavp_gm to --scores")
    res = run("scan", "--demo", "--scores", "i2f", *FAST)
    assert_refused(res, "risk score 'grad_norm'", "add grad_norm to --scores")


def test_cli_default_table_says_what_was_computed(tmp_path: Path) -> None:
    res = run("scan", "--demo", "--fail-on", "lavp_cos_max<0", *FAST)
    assert res.exit_code == 0, res.output
    assert (
        "computed: grad_norm (risk score), lavp_cos_max (gate rule lavp_cos_max<0), "
        "i2f (gate rule i2f<0.05); use --scores all for every score"
    ) in res.stdout
    res = run("scan", "--demo", "--format", "md", *FAST)
    assert "computed: grad_norm (risk score), i2f (gate rule i2f<0.05)" in res.stdout


def test_a_calibration_pulls_its_rule_scores_in(tmp_path: Path, recorded) -> None:
    # A calibration whose only candidate is lavp_gm: its rule reads lavp_gm.
    cfg = small(**{"scores.select": [GRAD_NORM, LAVP_GM], "data.per_class": 3})
    inputs = api.load_inputs(cfg)
    gm = np.array([s.scores[LAVP_GM] for s in api.scan(cfg).samples])
    order = np.argsort(np.argsort(gm))
    x = torch.stack([inputs.dataset[i][0] for i in range(len(gm))]).reshape(len(gm), -1)
    x = x.double().numpy()
    x = (x - x.min()) / np.ptp(x)
    amp = 0.01 + 0.4 * order / (len(gm) - 1)
    quality = recovery(x + amp[:, None] * (-1.0) ** np.arange(x.shape[1]), x)
    meta = {
        "model": {
            "name": "lenet",
            "architecture": architecture_signature(inputs.model),
            "input_shape": list(inputs.dataset[0][0].shape),
            "checkpoint_sha256": inputs.checkpoint_sha256,
        },
        "data": {"fingerprint": "synthetic"},
        "attack": {"attacks": ["synthetic"], "budget": "none"},
        "defense": {"kind": "gaussian", "sigma": 0.01},
    }
    cal = fit_calibration({LAVP_GM: gm}, quality, meta=meta, k=3)
    assert cal.usable and cal.chosen is not None and cal.chosen.scores == (LAVP_GM,)
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(cal.to_dict()))
    recorded.clear()
    report = api.scan(small(**{"scores.calibration": str(path), "data.per_class": 3}))
    assert recorded[0][0].scores == (GRAD_NORM, LAVP_GM)
    assert report.to_dict()["scores"]["reasons"] == {
        GRAD_NORM: ["risk"],
        LAVP_GM: ["calibration"],
    }
    assert report.calibrated


class Stop(Exception):
    pass


def test_resume_with_a_different_selection_is_refused(tmp_path: Path) -> None:
    cfg = small(**{"scores.chunk_size": 4})
    sidecar = tmp_path / "r.json.partial.pt"

    def stop(done: int, total: int) -> None:
        if done > 4:
            raise Stop

    with pytest.raises(Stop):
        api.scan(cfg, progress=stop, partial_path=sidecar)
    assert list(torch.load(sidecar, weights_only=True)["result"]["scores"]) == [GRAD_NORM]
    gated = with_overrides(cfg, {"gate.rules": [{"score": LAVP_COS_MAX, "threshold": 0}]})
    with pytest.raises(
        ConfigError, match="hold the scores grad_norm, this scan computes grad_norm, lavp_cos_max"
    ):
        api.scan(gated, resume_path=sidecar)
    with pytest.raises(ConfigError, match="this scan computes grad_norm, lavp_l2_max"):
        api.scan(with_overrides(cfg, {"scores.select": "all"}), resume_path=sidecar)
    # The list auto resolves to is the same selection: resuming is allowed.
    listed = with_overrides(cfg, {"scores.select": [GRAD_NORM]})
    assert api.scan(listed, resume_path=sidecar).summary["resumed_samples"] == 4


def test_validate_report_without_the_risk_score_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert run("scan", "--demo", "--json", str(out), *FAST).exit_code == 0
    res = run("validate", "--report", str(out), "--risk-score", "lavp_gm", "--no-progress")
    assert_refused(res, "no 'lavp_gm' scores", "computed grad_norm, i2f", "--scores all")
