"""The CLI end to end on a small real scan: formats, streams, exit codes, gate flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import leakaudit
from leakaudit import api
from leakaudit.cli import app
from leakaudit.demo import DEMO_CHECKPOINT
from leakaudit.errors import RuntimeFailure
from leakaudit.models.lenet import LeNet
from leakaudit.report.schema import schema_errors

SMALL = ["--demo", "--first", "1200", "--per-class", "1", "--max-iter", "12", "--n-probes", "2",
         "--no-progress"]  # fmt: skip


def run(*args: str):
    return CliRunner().invoke(app, ["scan", *SMALL, *args])


def test_json_to_stdout_and_table_to_stderr() -> None:
    result = run("--json", "-")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert schema_errors(report) == []
    assert report["summary"]["num_samples"] == 10
    assert "riskiest samples" in result.stderr and "gate passed" in result.stderr


def test_markdown_output_file_and_json_file(tmp_path: Path) -> None:
    md, js = tmp_path / "summary.md", tmp_path / "r.json"
    result = run("--format", "md", "--output", str(md), "--json", str(js), "--top-k", "3")
    assert result.exit_code == 0, result.output
    text = md.read_text()
    assert text.startswith("## leakaudit scan: ✅ gate passed")
    report = json.loads(js.read_text())
    riskiest = min(report["samples"], key=lambda s: s["rank"])
    assert f"| 1 | `{riskiest['id']}` |" in text
    assert text.count("\n| ") - text.count("\n| ---") >= 3
    assert result.stdout == ""  # everything went to files


def test_table_lists_top_k_in_rank_order() -> None:
    result = run("--format", "json")
    report = json.loads(result.stdout)
    table = run("--top-k", "4").stdout
    ranked = sorted(report["samples"], key=lambda s: s["rank"])
    positions = [table.index(f" {s['id']} ") for s in ranked[:4]]
    assert positions == sorted(positions)
    assert f" {ranked[4]['id']} " not in table


def test_gate_fails_with_exit_1_and_allowlist_rescues() -> None:
    failed = run("--fail-on", "grad_norm>0")
    assert failed.exit_code == 1, failed.output
    assert "gate failed: 10 risky samples" in failed.stderr
    report = json.loads(run("--fail-on", "grad_norm>0", "--json", "-").stdout)
    ids = [s["id"] for s in report["samples"]]
    assert report["gate"]["offending"] == ids
    allow = [a for i in ids for a in ("--allow", f"{i}=synthetic test sample")]
    assert run("--fail-on", "grad_norm>0", *allow).exit_code == 0
    # 1 of 10 tolerated: fails; 100% tolerated: passes.
    assert run("--fail-on", "grad_norm>0", "--max-fraction", "0.1").exit_code == 1
    assert run("--fail-on", "grad_norm>0", "--max-fraction", "1").exit_code == 0


def test_runtime_failures_exit_3(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeFailure("the engine ran out of memory")

    monkeypatch.setattr(api, "scan", broken)
    result = run()
    assert result.exit_code == 3 and result.stderr == "error: the engine ran out of memory\n"

    def bug(*args, **kwargs):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(api, "scan", bug)
    result = run()
    assert result.exit_code == 3 and "internal error: ZeroDivisionError" in result.stderr
    assert "Traceback" not in result.stderr


def test_defense_flag_changes_i2f_linearly() -> None:
    a = json.loads(run("--json", "-", "--defense", "gaussian:sigma=0.01").stdout)
    b = json.loads(run("--json", "-", "--defense", "gaussian:sigma=0.03").stdout)
    assert b["defense"] == {"kind": "gaussian", "sigma": 0.03}
    for sa, sb in zip(a["samples"], b["samples"], strict=True):
        assert sb["scores"]["i2f"] == pytest.approx(3 * sa["scores"]["i2f"], rel=1e-4)


def test_version_and_help() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.stdout.strip() == f"leakaudit {leakaudit.__version__}"
    assert "--fail-on" in CliRunner().invoke(app, ["scan", "--help"]).stdout


def _demo_lenet() -> torch.nn.Module:
    model = LeNet(num_classes=10, in_channels=1, image_size=8)
    model.load_state_dict(load_file(str(DEMO_CHECKPOINT)))
    return model


def test_torchscript_weights_into_a_named_architecture(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.script(_demo_lenet()).save(str(path))
    ref = json.loads(run("--json", "-").stdout)
    assert run("--checkpoint", str(path)).exit_code == 2  # TorchScript is code: needs trust
    got = json.loads(run("--checkpoint", str(path), "--trust-checkpoint", "--json", "-").stdout)
    assert got["model"]["checkpoint"]["format"] == "torchscript"
    assert [s["scores"] for s in got["samples"]] == [s["scores"] for s in ref["samples"]]


def test_torchscript_archive_as_the_model(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.script(_demo_lenet()).save(str(path))
    result = run("--model", "torchscript", "--checkpoint", str(path), "--trust-checkpoint",
                 "--json", "-")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["summary"]["backend"] == "autograd"


def test_trusted_pickle_warns(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(_demo_lenet(), path)
    refused = run("--model", "torchscript", "--checkpoint", str(path))
    assert refused.exit_code == 2 and "--trust-checkpoint" in refused.stderr
    result = run("--checkpoint", str(path), "--trust-checkpoint", "--json", "-")
    assert result.exit_code == 0, result.output
    assert "warning: --trust-checkpoint" in result.stderr
    report = json.loads(result.stdout)
    assert report["model"]["checkpoint"]["trusted"] is True and report["warnings"]


def test_version_is_fast_and_python_m_works() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.argv = ['leakaudit', '--version']; from leakaudit.__main__ import main; "
        "main(); assert 'torch' not in sys.modules, 'torch imported for --version'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("leakaudit ")
    run = subprocess.run(
        [sys.executable, "-m", "leakaudit", "scan", "--no-such-flag"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert run.stderr.strip().startswith("error:") and "leakaudit scan --help" in run.stderr


def test_one_sample_is_singular() -> None:
    from typer.testing import CliRunner

    from leakaudit.cli import app

    res = CliRunner().invoke(
        app,
        [
            "scan",
            "--demo",
            "--first",
            "1",
            "--max-iter",
            "4",
            "--n-probes",
            "2",
            "--no-progress",
            "--format",
            "md",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "1 sample in" in res.stderr and "1 samples" not in res.stderr + res.stdout
    assert "(1 sample)" in res.stdout


@pytest.mark.parametrize("columns", [80, 120])
def test_piped_table_fits_columns(columns: int, monkeypatch) -> None:
    from typer.testing import CliRunner

    from leakaudit.cli import app

    monkeypatch.setenv("COLUMNS", str(columns))
    # Every score: more columns than fit, so the compact table drops some.
    args = ["--first", "3", "--max-iter", "4", "--n-probes", "2", "--no-progress"]
    res = CliRunner().invoke(app, ["scan", "--demo", *args, "--scores", "all"])
    assert res.exit_code == 0, res.output
    widest = max(len(line) for line in res.stdout.splitlines())
    assert widest <= columns, widest
    assert "more scores in the JSON report" in res.stdout  # says what it dropped
