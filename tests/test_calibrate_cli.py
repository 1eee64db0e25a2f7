"""``leakaudit calibrate`` and ``scan --calibration`` end to end on the shipped demo (a LeNet
trained on scikit-learn's digits).

The scan-side tests use a calibration fitted to the demo's own scores (no attacks, fast);
one test runs the real attacks through the CLI.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from leakaudit import api
from leakaudit.calibration.document import architecture_signature
from leakaudit.calibration.fit import fit_calibration
from leakaudit.calibration.recovery import recovery
from leakaudit.cli import app
from leakaudit.config import with_overrides
from leakaudit.demo import demo_config
from tests.ground_truth import digits

FAST = ["--max-iter", "8", "--n-probes", "2", "--no-progress"]


def run(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def demo_calibration(tmp_path_factory) -> tuple[Path, dict]:
    """A calibration of the demo model whose 'attack' recovers low-grad_norm digits best.

    The PSNRs are built from the demo's own gradient norms (a known monotone relation,
    noise-free), so the chosen rule and direction are known: grad_norm, smaller riskier.
    """
    inputs = api.load_inputs(demo_config())
    # lavp_gm is no score the demo's scan reads (it computes only those by default).
    report = api.scan(
        with_overrides(demo_config(), {"scores.select": ["grad_norm", "lavp_gm", "i2f"]})
    )
    g = np.array([s.scores["grad_norm"] for s in report.samples])
    order = np.argsort(np.argsort(g))
    n = len(g)
    x, _ = digits(n, 8)
    x = x.reshape(n, -1).numpy().astype(np.float64)
    x = (x - x.min()) / np.ptp(x)
    amp = 0.01 + 0.4 * order / (n - 1)  # noise grows with grad_norm
    quality = recovery(x + amp[:, None] * (-1.0) ** np.arange(x.shape[1]), x)
    first = inputs.dataset[0][0]
    meta = {
        "model": {
            "name": "lenet",
            "architecture": architecture_signature(inputs.model),
            "input_shape": list(first.shape),
            "checkpoint_sha256": inputs.checkpoint_sha256,
        },
        "data": {"fingerprint": "synthetic"},
        "attack": {"attacks": ["synthetic"], "budget": "none"},
        "defense": {"kind": "gaussian", "sigma": 0.01},
    }
    cal = fit_calibration(
        {"grad_norm": g, "lavp_gm": np.array([s.scores["lavp_gm"] for s in report.samples])},
        quality,
        meta=meta,
    )
    assert cal.usable and cal.chosen is not None and cal.chosen.scores == ("grad_norm",)
    path = tmp_path_factory.mktemp("cal") / "calibration.json"
    path.write_text(json.dumps(cal.to_dict()))
    return path, cal.to_dict()


def _scan(tmp_path: Path, cal: Path, *extra: str):
    out = tmp_path / "r.json"
    res = run("scan", "--demo", "--calibration", str(cal), "--json", str(out), *FAST, *extra)
    return res, (json.loads(out.read_text()) if out.exists() else None)


def test_scan_predicts_psnr_and_ranks_by_it(tmp_path: Path, demo_calibration) -> None:
    path, _ = demo_calibration
    res, rep = _scan(tmp_path, path)
    assert res.exit_code == 0, res.output
    assert rep["risk"]["calibrated"] is True and rep["risk"]["score"] == "psnr"
    assert rep["risk"]["calibration"]["rule"] == "grad_norm↓"
    ranked = sorted(rep["samples"], key=lambda s: s["rank"])
    psnr = [s["predicted_psnr_db"] for s in ranked]
    assert all(a >= b - 1e-9 for a, b in itertools.pairwise(psnr))  # riskiest first
    assert all(
        lo <= p <= hi
        for (lo, hi), p in ((s["psnr_interval_db"], s["predicted_psnr_db"]) for s in ranked)
    )
    g = [s["scores"]["grad_norm"] for s in ranked]
    assert g[0] == min(g) and g[-1] == max(g)  # smaller grad_norm predicted better recovered
    assert "uncalibrated" not in res.output


def test_psnr_gate_rules(tmp_path: Path, demo_calibration) -> None:
    path, cal = demo_calibration
    top = max(cal["map"]["values"])
    res, rep = _scan(tmp_path, path, "--fail-on", f"psnr>{top + 1:.1f}")
    assert res.exit_code == 0, res.output  # nobody is predicted above the map's top
    res, rep = _scan(tmp_path, path, "--fail-on", f"psnr>{top - 1:.1f}")
    assert res.exit_code == 1, res.output
    offending = set(rep["gate"]["offending"])
    above = {s["id"] for s in rep["samples"] if s["predicted_psnr_db"] > top - 1}
    assert offending == above and offending


def test_refusals(tmp_path: Path, demo_calibration) -> None:
    path, cal = demo_calibration
    res = run("scan", "--demo", "--fail-on", "psnr>20", *FAST)
    assert res.exit_code == 2 and "needs scores.calibration" in res.stderr
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**cal, "model": {**cal["model"], "architecture": "x" * 64}}))
    res = run("scan", "--demo", "--calibration", str(other), *FAST)
    assert res.exit_code == 2 and "another architecture" in res.stderr
    failed = tmp_path / "failed.json"
    failed.write_text(json.dumps({**cal, "status": "attacks_failed", "chosen": None, "map": None}))
    res = run("scan", "--demo", "--calibration", str(failed), *FAST)
    assert res.exit_code == 2 and "no score → PSNR map" in res.stderr
    res = run("scan", "--demo", "--calibration", str(tmp_path / "missing.json"), *FAST)
    assert res.exit_code == 2 and "calibrate" in res.stderr
    # Writing the report over the calibration it reads is refused.
    res = run("scan", "--demo", "--calibration", str(path), "--json", str(path), *FAST)
    assert res.exit_code == 2 and "the calibration" in res.stderr


def test_another_checkpoint_of_the_same_architecture_warns(
    tmp_path: Path, demo_calibration
) -> None:
    _, cal = demo_calibration
    later = tmp_path / "later.json"
    model = {**cal["model"], "checkpoint_sha256": "0" * 64}
    later.write_text(json.dumps({**cal, "model": model, "created": "2026-11-01T00:00:00+00:00"}))
    res, rep = _scan(tmp_path, later)
    assert res.exit_code == 0, res.output
    assert any("another checkpoint" in w and "days ago" in w for w in rep["warnings"])


def test_uncalibrated_reports_say_so(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    res = run("scan", "--demo", "--json", str(out), "--format", "md", *FAST)
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["risk"]["calibrated"] is False
    assert "uncalibrated" in res.stdout
