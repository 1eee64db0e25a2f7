"""The JSON Schemas shipped in the package (``leakaudit/schemas/*.schema.json``): valid
draft 2020-12 with ``$schema`` and ``$id``, printed by ``leakaudit schema``, and matched by
real documents the CLI writes, checked with :mod:`jsonschema` itself."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from typer.testing import CliRunner

from leakaudit.calibration.document import CALIBRATION_VERSION, architecture_signature
from leakaudit.calibration.fit import fit_calibration
from leakaudit.calibration.recovery import recovery
from leakaudit.cli import app
from leakaudit.config import OutputConfig
from leakaudit.defenses import DEFENSES
from leakaudit.report.document import SCHEMA_VERSION
from leakaudit.report.formats import FormatName
from leakaudit.report.schema import (
    REPORT_SCHEMA,
    load_schema,
    schema_errors,
    schema_names,
    schema_text,
)
from leakaudit.scores.names import ALL_SCORES
from tests.ground_truth import digits

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "leakaudit" / "schemas"
FAST = ["--first", "1200", "--per-class", "1", "--max-iter", "8", "--n-probes", "2",
        "--no-progress"]  # fmt: skip


def assert_matches(doc: dict, name: str) -> None:
    """``doc`` is valid under the shipped schema ``name``, by plain :mod:`jsonschema`."""
    validator = jsonschema.Draft202012Validator(load_schema(name))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
    assert errors == []
    assert schema_errors(doc, load_schema(name)) == []  # and by the package's own checker


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scan") / "report.json"
    result = CliRunner().invoke(app, ["scan", "--demo", *FAST, "--json", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_every_schema_file_is_draft_2020_12_with_an_id() -> None:
    files = sorted(SCHEMAS.glob("*.schema.json"))
    assert {f.name.removesuffix(".schema.json") for f in files} == set(schema_names())
    assert schema_names()[:2] == ("report", "validation")
    for path in files:
        schema = json.loads(path.read_text())
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert re.fullmatch(r"https://leakaudit\.dev/schemas/[a-z]+-[0-9.]+\.json", schema["$id"])
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema_text(path.name.removesuffix(".schema.json")) == path.read_text()


def test_report_schema_follows_the_package() -> None:
    assert REPORT_SCHEMA["$id"] == f"https://leakaudit.dev/schemas/report-{SCHEMA_VERSION}.json"
    for name in ("report", "validation"):
        assert load_schema(name)["$defs"]["scoreName"]["enum"] == list(ALL_SCORES)
    assert REPORT_SCHEMA["properties"]["schema_version"]["pattern"].startswith(
        "^" + SCHEMA_VERSION.split(".")[0]
    )


def test_schema_files_are_package_data() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^leakaudit = \[.*"schemas/\*\.json"', pyproject, re.M)
    assert re.search(r'^    "jsonschema>=', pyproject, re.M)


def test_format_names_are_the_config_choices() -> None:
    hint = typing.get_type_hints(OutputConfig)["format"]
    assert list(typing.get_args(hint)) == [f.value for f in FormatName]


def test_demo_report_matches_the_schema(demo_report: Path) -> None:
    doc = json.loads(demo_report.read_text())
    assert_matches(doc, "report")
    broken = json.loads(demo_report.read_text())
    broken["samples"][0]["rank"] = 1.0  # an integer is never a float here
    broken["samples"][1]["scores"]["made_up"] = 0.5
    del broken["gate"]["passed"]
    errors = schema_errors(broken)
    assert "$.samples[0].rank: expected integer, got float" in errors
    assert "$.gate: missing key 'passed'" in errors
    assert any(e.startswith("$.samples[1].scores") and "made_up" in e for e in errors)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**doc, "surprise": 1}, REPORT_SCHEMA)


def test_redacted_report_matches_the_schema(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LEAKAUDIT_REDACT_KEY", "test-key")
    out = tmp_path / "r.json"
    args = ["scan", "--demo", *FAST, "--redact", "--fail-on", "grad_norm>0.01",
            "--max-fraction", "1", "--json", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["paths"]["redacted"] is True and doc["paths"]["base"] is None
    assert doc["gate"]["rules"][-1]["offending"]  # the rule had risky samples to list
    assert_matches(doc, "report")


def test_validation_json_matches_the_schema(demo_report: Path, tmp_path: Path) -> None:
    out = tmp_path / "v.json"
    args = ["validate", "--report", str(demo_report), "--budget", "fast", "--attacks", "dlg",
            "--n-samples", "3", "--no-progress", "--device", "cpu", "--json", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["validation"]["n_samples"] == 3
    assert_matches(doc, "validation")
    doc["validation"]["agreement"][0]["direction"] = "maybe"
    assert schema_errors(doc, load_schema("validation"))


@pytest.mark.parametrize("name", ["report", "validation", "calibration"])
def test_schema_command_prints_the_file(name: str) -> None:
    result = CliRunner().invoke(app, ["schema", name])
    assert result.exit_code == 0, result.output
    assert result.stdout == (SCHEMAS / f"{name}.schema.json").read_text()
    assert json.loads(result.stdout)["$id"].endswith(".json")


def test_schema_command_defaults_to_the_report() -> None:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0 and json.loads(result.stdout) == REPORT_SCHEMA


def test_unknown_schema_is_one_error_line() -> None:
    result = CliRunner().invoke(app, ["schema", "reprot"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: unknown schema 'reprot' (did you mean report?)"]
    assert result.stdout == ""


# --- calibration.json -------------------------------------------------------------------


def _digit_calibration(attacks_recover: bool) -> dict:
    """calibration.json as ``leakaudit calibrate`` writes it, fitted on real digits.

    Two image statistics stand in for scores (ink for ``grad_norm``, stroke edges for
    ``lavp_l2_max``); the "attack" either recovers low-edge digits best (a known monotone
    relation: calibrated) or returns a flat grey image (nothing recovered: attacks_failed).
    """
    from leakaudit.models import build_model

    n = 48
    X, _ = digits(n, 8)
    x = X.reshape(n, -1).numpy().astype(np.float64)
    x = (x - x.min()) / np.ptp(x)
    edges = np.abs(np.diff(x.reshape(n, 8, 8), axis=2)).mean((1, 2))
    scores = {"grad_norm": x.mean(1), "lavp_l2_max": edges}
    if attacks_recover:
        amp = 0.02 + 0.6 * (edges - edges.min()) / np.ptp(edges)
        quality = recovery(x + amp[:, None] * (-1.0) ** np.arange(x.shape[1])[None], x)
    else:
        quality = recovery(np.full_like(x, 0.5), x)
    model = build_model("lenet", num_classes=10, in_channels=1, image_size=8)
    meta = {
        "model": {
            "name": "lenet",
            "architecture": architecture_signature(model),
            "input_shape": [1, 8, 8],
            "checkpoint_sha256": None,
        },
        "data": {"fingerprint": "f" * 64, "kind": "digits", "samples": n},
        "attack": {"attacks": ["idlg", "ig"], "budget": "fast", "seed": 0},
        "defense": {"kind": "gaussian", "sigma": 0.01},
    }
    cal = fit_calibration(scores, quality, meta=meta)
    return json.loads(json.dumps(cal.to_dict(), allow_nan=False))  # as the CLI writes it


def test_calibration_schema_follows_the_package() -> None:
    schema = load_schema("calibration")
    assert schema["$id"] == f"https://leakaudit.dev/schemas/calibration-{CALIBRATION_VERSION}.json"
    assert schema["$defs"]["scoreName"]["enum"] == list(ALL_SCORES)
    assert schema["$defs"]["defense"]["properties"]["kind"]["enum"] == list(DEFENSES)
    pattern = schema["properties"]["calibration_version"]["pattern"]
    assert re.match(pattern, CALIBRATION_VERSION)
    assert not re.match(pattern, f"{int(CALIBRATION_VERSION.split('.')[0]) + 1}.0")


@pytest.mark.parametrize(
    ("attacks_recover", "status"), [(True, "calibrated"), (False, "attacks_failed")]
)
def test_fitted_calibrations_match_the_schema(attacks_recover: bool, status: str) -> None:
    doc = _digit_calibration(attacks_recover)
    assert doc["status"] == status
    assert (doc["chosen"] is None) is (status == "attacks_failed")
    assert_matches(doc, "calibration")


def test_calibration_with_a_wrong_field_type_fails() -> None:
    schema = load_schema("calibration")
    good = _digit_calibration(True)
    failed = _digit_calibration(False)
    bad = json.loads(json.dumps(good))
    bad["recovery"]["attacked"] = "48"
    bad["map"]["coverage"] = "0.8"
    bad["chosen"]["signs"] = [0]
    errors = schema_errors(bad, schema)
    assert "$.recovery.attacked: expected integer, got str" in errors
    assert "$.map.coverage: expected number, got str" in errors
    assert any(e.startswith("$.chosen") for e in errors)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    # The status decides which parts exist: no map when calibrated, a rule when failed,
    # a failure without its reason.
    assert schema_errors({**good, "map": None}, schema)
    assert schema_errors({**failed, "chosen": good["chosen"], "map": good["map"]}, schema)
    no_reason = {k: v for k, v in failed["recovery"].items() if k != "reason"}
    assert "$.recovery: missing key 'reason'" in schema_errors(
        {**failed, "recovery": no_reason}, schema
    )


def test_calibrate_command_output_matches_the_schema(tmp_path: Path) -> None:
    """The real writer: attacks on the demo (thresholds lowered so every sample counts)."""
    out = tmp_path / "calibration.json"
    args = ["calibrate", "--demo", "--n", "6", "--folds", "2", "--budget", "fast",
            "--attacks", "dlg", "--device", "cpu", "--min-psnr", "0", "--min-gain", "-100",
            "--no-progress", "-o", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["status"] == "calibrated" and doc["recovery"]["attacked"] == 6
    assert_matches(doc, "calibration")
