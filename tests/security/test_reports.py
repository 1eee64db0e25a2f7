"""A scan report is data: ``validate --report`` must not let it load code, unpickle,
or attack a checkpoint other than the one scanned; a report that is not text is a bad
input; output files respect the umask and are checked before any work.

Every hostile report is crafted here from a real report of a tiny demo scan.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from leakaudit import api
from leakaudit.cli import app
from leakaudit.report.files import write_atomic
from tests.helpers_cli import assert_refused
from tests.test_cli_errors import FAST

#: The smallest validation: three samples, one attack, the fast budget.
TINY = ["--budget", "fast", "--n-samples", "3", "--attacks", "dlg", "--no-progress"]


def validate(*args: str):
    return CliRunner().invoke(app, ["validate", *args])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def craft(tmp_path: Path, report: dict[str, Any], **model: Any) -> str:
    """Write ``report`` with ``config.model`` keys replaced; a new checkpoint's SHA-256
    is recorded too, as an attacker who crafts the report would do."""
    report = json.loads(json.dumps(report))
    report["config"]["model"].update(model)
    if "checkpoint" in model:
        report["model"]["checkpoint"]["path"] = model["checkpoint"]
        report["model"]["checkpoint"]["sha256"] = sha256(Path(model["checkpoint"]))
    path = tmp_path / "crafted.json"
    path.write_text(json.dumps(report))
    return str(path)


class _Touch:
    """Unpickling this creates ``marker``: what a hostile pickle can do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_report_cannot_grant_trust_to_a_pickle(tmp_path: Path, scanned) -> None:
    report, ckpt = scanned
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": load_file(ckpt), "x": _Touch(marker)}, evil)
    path = craft(tmp_path, report, checkpoint=str(evil), trust_checkpoint=True)
    assert_refused(validate("--report", path, *TINY), "--trust-checkpoint")
    assert not marker.exists()


def test_report_cannot_name_a_model_factory(tmp_path: Path, scanned) -> None:
    report, _ = scanned
    marker = tmp_path / "PWNED"
    path = craft(tmp_path, report, name="os:system", kwargs={"command": f"touch {marker}"})
    assert_refused(validate("--report", path, *TINY), "'os:system'", "--model os:system")
    assert not marker.exists()
    path = craft(tmp_path, report, name=f"{tmp_path / 'evil.py'}:build")
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w')\ndef build(**kw): pass\n")
    assert_refused(validate("--report", path, *TINY), "cannot load code")
    assert not marker.exists()


def test_checkpoint_replaced_after_the_scan(tmp_path: Path, scanned) -> None:
    report, ckpt = scanned
    swapped = tmp_path / "model.safetensors"
    shutil.copyfile(ckpt, swapped)
    path = craft(tmp_path, report, checkpoint=str(swapped))  # records its SHA-256
    weights = load_file(swapped)
    save_file({k: v + 0.01 for k, v in weights.items()}, swapped)
    assert_refused(validate("--report", path, *TINY), "SHA-256", str(swapped))
    unrecorded = json.loads(Path(path).read_text())
    del unrecorded["model"]["checkpoint"]["sha256"]
    Path(path).write_text(json.dumps(unrecorded))
    assert_refused(validate("--report", path, *TINY), "SHA-256")


def test_the_report_of_a_real_scan_validates(tmp_path: Path, scanned) -> None:
    report, _ = scanned
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    out = tmp_path / "v.json"
    old = os.umask(0o022)
    try:
        result = validate("--report", str(path), *TINY, "--json", str(out))
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["validation"]["scores_from"] == "scan report"
    assert out.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    "content",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
        '{"samples": [], "config": {"x": "caf\u00e9"}}'.encode("latin-1"),
        b"[" * 100_000,
    ],
    ids=["png", "latin-1", "deeply-nested"],
)
def test_a_report_that_is_not_json_text(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(content)
    assert_refused(validate("--report", str(path), *TINY), str(path))


def test_new_files_follow_the_umask_and_replacements_keep_the_mode(tmp_path: Path) -> None:
    new, kept = tmp_path / "new.json", tmp_path / "kept.json"
    kept.write_text("old")
    kept.chmod(0o640)
    old = os.umask(0o022)
    try:
        write_atomic(new, "{}")
        write_atomic(kept, "{}")
    finally:
        os.umask(old)
    assert new.stat().st_mode & 0o777 == 0o644
    assert kept.stat().st_mode & 0o777 == 0o640 and kept.read_text() == "{}"


@pytest.mark.parametrize(
    "target", ["/nonexistent/dir/r.json", "/proc/leakaudit.json", "/sys/leakaudit.json"]
)
def test_unwritable_json_fails_before_any_attack(target: str, monkeypatch) -> None:
    def no_work(*args, **kwargs):
        raise AssertionError("validate must not start")

    monkeypatch.setattr(api, "validate", no_work)
    monkeypatch.setattr(api, "load_inputs", no_work)
    start = time.perf_counter()
    assert_refused(validate("--demo", *TINY, "--json", target), target)
    assert_refused(validate("--demo", *TINY, "--figure", target), target)
    assert time.perf_counter() - start < 5
    assert not Path(target).exists()


@pytest.mark.parametrize("flag", ["--json", "--output", "--partial"])
def test_scan_outputs_under_proc_fail_before_scanning(flag: str, monkeypatch) -> None:
    def no_scan(*args, **kwargs):
        raise AssertionError("the scan must not start")

    monkeypatch.setattr(api, "scan", no_scan)
    result = CliRunner().invoke(app, ["scan", "--demo", *FAST, flag, "/proc/leakaudit.out"])
    assert_refused(result, "/proc/leakaudit.out")
