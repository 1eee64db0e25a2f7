"""What a scan writes, and what it may destroy: resume must notice changed data, the
partial-results file never replaces a file of the user's, and reports carry no absolute
paths (and, with ``--redact``, no file names)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from leakaudit.cli import app
from leakaudit.models import build_model
from tests.helpers_cli import assert_refused
from tests.helpers_io import digit_images

FAST = ["--scores", "grad_norm,lavp_l2_max", "--risk-score", "grad_norm", "--max-iter", "4",
        "--n-probes", "1", "--no-progress"]  # fmt: skip


def lenet_checkpoint(path: Path, channels: int = 1) -> Path:
    torch.manual_seed(0)
    model = build_model("lenet", num_classes=10, in_channels=channels, image_size=8)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def write_digits(path: Path, start: int, n: int = 12) -> None:
    images, labels = digit_images(start + n)
    x = (images[start:, None] / 16.0).astype(np.float32)
    np.savez(path, x=x, y=labels[start:])


def tensor_scan(tmp_path: Path) -> list[str]:
    data = tmp_path / "d.npz"
    write_digits(data, 0)
    ckpt = lenet_checkpoint(tmp_path / "w.safetensors")
    return ["scan", "--data", str(data), "--data-kind", "tensors", "--checkpoint", str(ckpt),
            "--chunk-size", "4", *FAST]  # fmt: skip


def interrupt_after_first_chunk(monkeypatch, args: list[str]) -> None:
    """Run the CLI scan and press Ctrl-C once the first chunk is saved."""
    import leakaudit.api as api_module

    real_scan = api_module.scan

    def ctrl_c(cfg, *, progress=None, **kwargs):
        def stop(done: int, total: int) -> None:
            # Progress counts samples as they finish; past the first chunk's 4, that
            # chunk has been saved.
            if done > 4:
                raise KeyboardInterrupt

        return real_scan(cfg, progress=stop, **kwargs)

    monkeypatch.setattr(api_module, "scan", ctrl_c)
    result = CliRunner().invoke(app, args)
    monkeypatch.setattr(api_module, "scan", real_scan)
    assert result.exit_code == 3, result.output
    assert "--resume" in result.stderr


# --- 1. resume checks the data itself ---------------------------------------------------


def test_resume_refuses_rewritten_data(tmp_path: Path, monkeypatch) -> None:
    args = tensor_scan(tmp_path)
    sidecar = tmp_path / "p.pt"
    interrupt_after_first_chunk(monkeypatch, [*args, "--partial", str(sidecar)])
    saved = sidecar.read_bytes()
    # Same file name, same config: other images and labels.
    write_digits(tmp_path / "d.npz", 100)
    result = CliRunner().invoke(app, [*args, "--partial", str(sidecar), "--resume"])
    assert_refused(result, "the data changed since the partial results were written",
                   str(sidecar), "--resume")  # fmt: skip
    assert sidecar.read_bytes() == saved


def test_resume_with_unchanged_data_equals_an_uninterrupted_run(
    tmp_path: Path, monkeypatch
) -> None:
    args = tensor_scan(tmp_path)
    out = tmp_path / "r.json"
    interrupt_after_first_chunk(monkeypatch, [*args, "--json", str(out)])
    resumed = CliRunner().invoke(app, [*args, "--json", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    report = json.loads(out.read_text())
    assert report["summary"]["resumed_samples"] == 4
    assert not Path(f"{out}.partial.pt").exists()
    fresh = CliRunner().invoke(app, [*args, "--json", "-"])
    assert fresh.exit_code == 0, fresh.output
    again = json.loads(fresh.stdout)
    assert [s["scores"] for s in again["samples"]] == [s["scores"] for s in report["samples"]]
    assert [s["label"] for s in again["samples"]] == [s["label"] for s in report["samples"]]


# --- 2. --partial never destroys a file of the user's -----------------------------------


@pytest.mark.parametrize("resume", [False, True])
def test_partial_refuses_a_file_that_is_not_partial_results(tmp_path: Path, resume: bool) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"my notes\nkeep me\n")
    flags = ["--resume"] if resume else []
    result = CliRunner().invoke(app, [*tensor_scan(tmp_path), "--partial", str(notes), *flags])
    assert_refused(result, str(notes), "not a leakaudit partial-results file")
    assert notes.read_bytes() == b"my notes\nkeep me\n"


@pytest.mark.parametrize("target", ["--json", "--output"])
@pytest.mark.parametrize("resume", [False, True])
def test_partial_cannot_be_the_report(tmp_path: Path, target: str, resume: bool) -> None:
    report = tmp_path / "r.json"
    report.write_text('{"earlier": "report"}\n')
    (tmp_path / "sub").mkdir()
    same = tmp_path / "sub" / ".." / "r.json"  # the same file, spelt differently
    flags = ["--resume"] if resume else []
    result = CliRunner().invoke(
        app, [*tensor_scan(tmp_path), target, str(report), "--partial", str(same), *flags]
    )
    assert_refused(result, "--partial", target)
    assert report.read_text() == '{"earlier": "report"}\n'


# --- 3. the report's own privacy ---------------------------------------------------------

PEOPLE = ["alice_smith", "bob_jones", "carol_white", "dave_brown", "erin_black", "frank_green"]


def personal_imagefolder(tmp_path: Path) -> Path:
    """``tmp_path/project``: a config, a checkpoint and ``photos/<class>/<name>.png``."""
    project = tmp_path / "project"
    images, labels = digit_images(len(PEOPLE))
    for name, image, label in zip(PEOPLE, images, labels, strict=True):
        folder = project / "photos" / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 15).astype(np.uint8)).save(folder / f"{name}.png")
    lenet_checkpoint(project / "weights.safetensors")
    config = project / "scan.yaml"
    config.write_text(
        "model: {name: lenet, num_classes: 10, checkpoint: weights.safetensors}\n"
        "data: {kind: imagefolder, root: photos, channels: 1}\n"
    )
    return config


def test_report_stores_paths_relative_to_the_config(tmp_path: Path) -> None:
    config = personal_imagefolder(tmp_path)
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "r.json"
    result = CliRunner().invoke(app, ["scan", "--config", str(config), "--json", str(out), *FAST])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert str(tmp_path) not in text
    assert str(Path.home()) not in text
    report = json.loads(text)
    assert report["config"]["data"]["root"] == "photos"
    assert report["config"]["model"]["checkpoint"] == "weights.safetensors"
    assert report["model"]["checkpoint"]["path"] == "weights.safetensors"
    assert report["dataset"]["root"] == "photos"
    assert report["paths"] == {"base": "../project", "base_from": "report", "redacted": False}
    # validate --report finds the data and weights again from the report's own base.
    from leakaudit.report.paths import config_from_report

    cfg = config_from_report(report, out)
    assert Path(cfg.data.root).resolve() == (tmp_path / "project" / "photos").resolve()
    assert Path(cfg.model.checkpoint).resolve() == (config.parent / "weights.safetensors").resolve()


def test_redact_hides_file_names_and_paths(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LEAKAUDIT_REDACT_KEY", raising=False)
    config = personal_imagefolder(tmp_path)
    reports = []
    for run in ("a", "b"):
        out = tmp_path / f"{run}.json"
        args = ["scan", "--config", str(config), "--json", str(out), "--redact", *FAST]
        result = CliRunner().invoke(app, [*args, "--allow", "class_0/alice_smith.png=consented"])
        assert result.exit_code == 0, result.output
        assert "alice_smith" not in result.stdout
        text = out.read_text()
        for secret in (*PEOPLE, str(tmp_path), "project", "photos/"):
            assert secret not in text, secret
        reports.append(json.loads(text))
    first, second = reports
    ids = [s["id"] for s in first["samples"]]
    assert ids == [s["id"] for s in second["samples"]]  # same salt: same ids
    assert len(set(ids)) == len(PEOPLE)
    assert first["paths"]["redacted"] is True
    assert first["model"]["checkpoint"]["path"] == "weights.safetensors"
    mapping = json.loads((tmp_path / "cache" / "leakaudit" / "redact-map.json").read_text())
    assert {mapping[i] for i in ids} == {
        f"class_{label}/{name}.png"
        for name, label in zip(PEOPLE, digit_images(len(PEOPLE))[1], strict=True)
    }
    # The allowlist names the real id and still applies; the report shows its hash.
    assert first["gate"]["allowlist"][0]["id"] in ids
