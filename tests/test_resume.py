"""Long scans lose nothing: interrupt after the first chunk, resume, get the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from leakaudit.api import scan
from leakaudit.cli import app
from leakaudit.config import with_overrides
from leakaudit.demo import demo_config
from leakaudit.errors import ConfigError

SETTINGS = {
    "data.first": 1200,
    "data.per_class": 1,  # 10 samples
    "scores.select": ["grad_norm", "lavp_l2_max", "lavp_l2_min", "i2f"],
    "scores.risk_score": "i2f",
    "scores.max_iter": 12,
    "scores.n_probes": 2,
    "scores.chunk_size": 4,
}


class Stop(Exception):
    pass


def interrupt_after_first_chunk(done: int, total: int) -> None:
    # Progress counts samples as they finish; past the first chunk's 4, that
    # chunk has been saved.
    if done > 4:
        raise Stop


def interrupted(cfg, sidecar: Path) -> None:
    with pytest.raises(Stop):
        scan(cfg, progress=interrupt_after_first_chunk, partial_path=sidecar)
    assert sidecar.exists()
    blob = torch.load(sidecar, weights_only=True)
    assert blob["result"]["indices"].tolist() == [0, 1, 2, 3]


def test_resume_gives_the_uninterrupted_numbers(tmp_path: Path) -> None:
    cfg = with_overrides(demo_config(), SETTINGS)
    full = scan(cfg)
    sidecar = tmp_path / "r.json.partial.pt"
    interrupted(cfg, sidecar)
    resumed = scan(cfg, resume_path=sidecar)
    assert resumed.summary["resumed_samples"] == 4
    assert full.summary["resumed_samples"] == 0
    for a, b in zip(full.samples, resumed.samples, strict=True):
        assert (a.id, a.rank) == (b.id, b.rank)
        assert a.scores == b.scores  # per-sample seeds: bitwise the same
        assert a.diagnostics == b.diagnostics


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    cfg = with_overrides(demo_config(), SETTINGS)
    sidecar = tmp_path / "p.pt"
    interrupted(cfg, sidecar)
    other = with_overrides(cfg, {"scores.max_iter": 13})
    with pytest.raises(ConfigError, match="different model, data or score settings"):
        scan(other, resume_path=sidecar)
    # Presentation settings do not change the numbers: resuming is allowed.
    fine = with_overrides(cfg, {"scores.risk_score": "grad_norm", "scores.chunk_size": 3})
    assert scan(fine, resume_path=sidecar).summary["resumed_samples"] == 4


def test_cli_resume_continues_and_cleans_up(tmp_path: Path) -> None:
    cfg = with_overrides(demo_config(), SETTINGS)
    out = tmp_path / "report.json"
    sidecar = Path(f"{out}.partial.pt")
    interrupted(cfg, sidecar)
    args = ["scan", "--demo", "--first", "1200", "--per-class", "1", "--risk-score", "i2f",
            "--scores", "grad_norm,lavp_l2_max,lavp_l2_min,i2f", "--max-iter", "12",
            "--n-probes", "2", "--chunk-size", "4", "--json", str(out),
            "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["summary"]["resumed_samples"] == 4
    assert not sidecar.exists()
    fresh = CliRunner().invoke(app, [*args, "--json", "-"])
    assert fresh.exit_code == 0
    again = json.loads(fresh.stdout)
    assert [s["scores"] for s in again["samples"]] == [s["scores"] for s in report["samples"]]


def test_cli_interrupt_names_the_partial_file(tmp_path: Path, monkeypatch) -> None:
    import leakaudit.api as api_module

    real_scan = api_module.scan

    def ctrl_c_after_first_chunk(cfg, *, progress=None, **kwargs):
        def stop(done: int, total: int) -> None:
            # Progress counts samples as they finish; past the first chunk's 4, that
            # chunk has been saved.
            if done > 4:
                raise KeyboardInterrupt

        return real_scan(cfg, progress=stop, **kwargs)

    monkeypatch.setattr(api_module, "scan", ctrl_c_after_first_chunk)
    out = tmp_path / "r.json"
    args = ["scan", "--demo", "--first", "1200", "--per-class", "1", "--max-iter", "4",
            "--n-probes", "1", "--chunk-size", "4", "--json", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 3
    assert "--resume" in result.stderr and f"{out}.partial.pt" in result.stderr
    assert Path(f"{out}.partial.pt").exists() and not out.exists()
    monkeypatch.setattr(api_module, "scan", real_scan)
    again = CliRunner().invoke(app, [*args, "--no-progress"])  # without --resume: afresh
    assert again.exit_code == 0 and "replacing the partial results" in again.stderr
    assert json.loads(out.read_text())["summary"]["resumed_samples"] == 0
