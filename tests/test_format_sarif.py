"""The ``sarif`` format: a SARIF 2.1.0 log that the official schema accepts, one rule per
gate rule, one result per risky sample, each located at the sample's file when it is one.

The schema is ``tests/data/sarif-schema-2.1.0.json``, vendored from the OASIS SARIF TC's
repository (see tests/data/README.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from leakaudit.cli import app
from leakaudit.models import build_model
from leakaudit.report.formats import FormatName, SarifFormat
from leakaudit.report.formats.sarif import rule_ids
from tests.helpers_io import digit_images
from tests.test_report import hand_report

SARIF_SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())
SMALL = ["--demo", "--first", "1200", "--per-class", "1", "--max-iter", "8", "--n-probes", "2",
         "--no-progress"]  # fmt: skip


def assert_valid_sarif(log: dict) -> None:
    """No error from the official SARIF 2.1.0 schema (draft 4), formats checked too."""
    validator = jsonschema.Draft4Validator(
        SARIF_SCHEMA, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
    )
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(log)]
    assert errors == []


def imagefolder_report(**gate):
    """The hand report, as if its samples were ``data/img/<i>.png`` of an imagefolder."""
    report = hand_report(gate=gate)
    report.dataset = {"kind": "imagefolder", "root": "data", "num_samples": len(report.samples)}
    report.paths = {"base": "proj", "base_from": "cwd", "redacted": False}
    return report


def render(report) -> dict:
    fmt = FormatName("sarif").to_format(top_k=1)
    assert isinstance(fmt, SarifFormat) and fmt.name == "sarif"
    text = fmt.render(report)
    assert text.endswith("\n") and "NaN" not in text
    return json.loads(text)


def test_one_rule_per_gate_rule_and_one_result_per_risky_sample() -> None:
    # i2f = [0.4, 2.0, 0.1, 3.0, 1.0, 0.7]; grad_norm = [0.5, 0.1, 0.9, 0.3, 0.2, 0.4]
    rules = [
        {"score": "i2f", "threshold": 0.5},  # risky: 0, 2 → fails
        {"score": "grad_norm", "threshold": 0.45, "max_fraction": 0.5},  # risky: 0, 2 → passes
    ]
    report = imagefolder_report(rules=rules)
    log = render(report)
    assert_valid_sarif(log)
    assert log["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    assert log["version"] == "2.1.0" and len(log["runs"]) == 1
    run = log["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "leakaudit" and driver["version"] == report.tool["version"]
    assert driver["informationUri"].startswith("https://")
    assert [r["id"] for r in driver["rules"]] == ["i2f-below-0.5", "grad_norm-above-0.45"]
    assert driver["rules"][0]["shortDescription"]["text"] == "gate rule i2f < 0.5 for at most 0%"
    assert all(r["help"]["text"] for r in driver["rules"])
    got = [(r["ruleId"], r["properties"]["sample_id"], r["level"]) for r in run["results"]]
    assert got == [
        ("i2f-below-0.5", "img/0.png", "error"),
        ("i2f-below-0.5", "img/2.png", "error"),
        ("grad_norm-above-0.45", "img/0.png", "warning"),
        ("grad_norm-above-0.45", "img/2.png", "warning"),
    ]
    first = run["results"][0]
    assert first["ruleIndex"] == 0
    sample = next(s for s in report.samples if s.id == "img/0.png")
    text = first["message"]["text"]
    assert "img/0.png" in text and "i2f = 0.4 < 0.5" in text
    assert f"risk rank {sample.rank} of 6" in text
    assert first["properties"]["value"] == pytest.approx(0.4)
    assert first["properties"]["scores"]["grad_norm"] == pytest.approx(0.5)
    location = first["locations"][0]
    assert location["physicalLocation"]["artifactLocation"] == {
        "uri": "proj/data/img/0.png",
        "uriBaseId": "%SRCROOT%",
    }
    assert "logicalLocations" not in location
    assert run["properties"]["gate"] == {"passed": False, "configured": True}


def test_non_file_ids_get_a_logical_location() -> None:
    report = hand_report(gate={"rules": [{"score": "i2f", "threshold": 0.5}]})
    report.dataset = {"kind": "digits", "root": None, "num_samples": 6}
    log = render(report)
    assert_valid_sarif(log)
    location = log["runs"][0]["results"][0]["locations"][0]
    assert "physicalLocation" not in location
    assert location["logicalLocations"][0]["name"] == "img/0.png"
    # Tensor data: the file that holds the samples, and the sample by name.
    report.dataset = {"kind": "tensors", "root": "x.npz", "num_samples": 6}
    report.paths = {"base": ".", "base_from": "cwd", "redacted": False}
    location = render(report)["runs"][0]["results"][0]["locations"][0]
    assert location["physicalLocation"]["artifactLocation"]["uri"] == "x.npz"
    assert location["logicalLocations"][0]["name"] == "img/0.png"


def test_redacted_reports_point_at_no_file() -> None:
    report = imagefolder_report(rules=[{"score": "i2f", "threshold": 0.5}])
    report.paths = {"base": None, "base_from": "cwd", "redacted": True}
    log = render(report)
    assert_valid_sarif(log)
    assert all("physicalLocation" not in r["locations"][0] for r in log["runs"][0]["results"])


def test_allowlisted_samples_are_suppressed_results_and_warnings_are_notifications() -> None:
    report = imagefolder_report(
        rules=[{"score": "i2f", "threshold": 0.5}],
        allowlist=[{"id": "img/2.png", "reason": "public sample"}],
    )
    report.warnings = ["scored random weights"]
    log = render(report)
    assert_valid_sarif(log)
    run = log["runs"][0]
    by_id = {r["properties"]["sample_id"]: r for r in run["results"]}
    assert "suppressions" not in by_id["img/0.png"]
    assert by_id["img/2.png"]["suppressions"] == [
        {"kind": "external", "justification": "public sample"}
    ]
    notes = run["invocations"][0]["toolExecutionNotifications"]
    assert [n["message"]["text"] for n in notes] == ["scored random weights"]


def test_no_rules_no_results_and_rule_ids_stay_unique() -> None:
    log = render(hand_report())
    assert_valid_sarif(log)
    assert log["runs"][0]["results"] == [] and log["runs"][0]["tool"]["driver"]["rules"] == []
    report = hand_report(
        gate={"rules": [{"score": "i2f", "threshold": 0.5}, {"score": "i2f", "threshold": 0.5,
                                                             "max_fraction": 0.5}]}
    )  # fmt: skip
    assert rule_ids(report.gate.rules) == ["i2f-below-0.5", "i2f-below-0.5-2"]


def test_odd_file_names_are_percent_encoded_and_shown_escaped() -> None:
    report = imagefolder_report(rules=[{"score": "i2f", "threshold": 0.5}])
    report.samples[0].id = "a b/\x1b[31m#é.png"
    report.gate.rules[0].offending[0] = "a b/\x1b[31m#é.png"
    log = render(report)
    assert_valid_sarif(log)
    result = log["runs"][0]["results"][0]
    uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "proj/data/a%20b/%1B%5B31m%23%C3%A9.png"
    assert "\x1b" not in result["message"]["text"] and "\\x1b" in result["message"]["text"]


def _project(tmp_path: Path) -> Path:
    """``project/``: a config scanning ``photos/class_<k>/<name>.png`` with a LeNet."""
    project = tmp_path / "project"
    images, labels = digit_images(4)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = project / "photos" / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 15).astype(np.uint8)).save(folder / f"img {i}.png")
    torch.manual_seed(0)
    model = build_model("lenet", num_classes=10, in_channels=1, image_size=8)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(project / "w.safetensors"))  # fmt: skip
    config = project / "scan.yaml"
    config.write_text(
        "model: {name: lenet, num_classes: 10, checkpoint: w.safetensors}\n"
        "data: {kind: imagefolder, root: photos, channels: 1}\n"
    )
    return config


def test_cli_sarif_locates_each_exposed_image_from_the_checkout_root(
    tmp_path: Path, monkeypatch
) -> None:
    _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    args = ["scan", "--config", "project/scan.yaml", "--scores", "grad_norm", "--max-iter", "4",
            "--n-probes", "1", "--no-progress", "--fail-on", "grad_norm>0",
            "-f", "sarif"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--output", "out.sarif"])
    assert result.exit_code == 1, result.output  # every sample is risky: the gate fails
    assert result.stdout == ""
    log = json.loads(Path("out.sarif").read_text())
    assert_valid_sarif(log)
    uris = [
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for r in log["runs"][0]["results"]
    ]
    assert len(uris) == 4 and all(u.startswith("project/photos/class_") for u in uris)
    for uri in uris:  # each one is the image, relative to where the scan ran
        assert os.path.isfile(uri.replace("%20", " ")), uri
    assert {r["level"] for r in log["runs"][0]["results"]} == {"error"}
    # The same log on stdout.
    stdout = CliRunner().invoke(app, args)
    assert stdout.exit_code == 1
    assert json.loads(stdout.stdout)["runs"][0]["results"] == log["runs"][0]["results"]


def test_cli_sarif_on_the_demo_passes_with_warnings_only() -> None:
    result = CliRunner().invoke(
        app, ["scan", *SMALL, "--fail-on", "grad_norm>0", "--max-fraction", "1", "-f", "sarif"]
    )
    assert result.exit_code == 0, result.output
    log = json.loads(result.stdout)
    assert_valid_sarif(log)
    results = log["runs"][0]["results"]
    rule_results = [r for r in results if r["ruleId"] == "grad_norm-above-0"]
    assert len(rule_results) == 10 and {r["level"] for r in rule_results} == {"warning"}
    assert all("logicalLocations" in r["locations"][0] for r in results)
