"""Bad input: one clear ``error:`` line on stderr, exit code 2, no traceback (unless
``--debug``). Each case goes through the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from leakaudit import api
from leakaudit.cli import app
from tests.helpers_cli import assert_refused
from tests.helpers_io import digit_images

FAST = ["--first", "1200", "--per-class", "1", "--max-iter", "4", "--n-probes", "1",
        "--no-progress"]  # fmt: skip


def run(args: list[str]):
    return CliRunner().invoke(app, ["scan", *args])


def write_yaml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


def digits_npz(tmp_path: Path, n: int = 4, poison: float | None = None) -> str:
    images, labels = digit_images(max(n, 1))
    x = (images[:n, None] / 16.0).astype(np.float32)
    if poison is not None:
        x[1, 0, 3, 3] = poison
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=labels[:n])
    return str(path)


def test_missing_checkpoint(tmp_path: Path) -> None:
    assert_refused(run(["--demo", "--checkpoint", str(tmp_path / "w.pt"), *FAST]),
                   "does not exist")  # fmt: skip


def test_truncated_checkpoint(tmp_path: Path) -> None:
    blob = torch.nn.Linear(64, 10).state_dict()
    full = tmp_path / "full.pt"
    torch.save(blob, full)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert_refused(run(["--demo", "--checkpoint", str(cut), *FAST]), "corrupt or truncated")


def test_architecture_mismatch_lists_keys() -> None:
    result = run(["--demo", "--model", "convnet", *FAST])
    assert_refused(result)
    assert "missing" in result.stderr and "unexpected" in result.stderr


def test_input_shape_the_model_rejects(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path, "model: {name: lenet, image_size: 8, random_init: true}\n"
                               "data: {kind: digits, resize: 16, first: 4}\n")  # fmt: skip
    assert_refused(run(["--config", cfg, *FAST[4:]]), "rejects", "(1, 16, 16)")


def test_labels_out_of_range(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path, "model: {name: lenet, num_classes: 5, random_init: true}\n"
                               "data: {kind: digits, first: 20}\n")  # fmt: skip
    assert_refused(run(["--config", cfg, *FAST[4:]]), "out of range")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_data(tmp_path: Path, bad: float) -> None:
    data = digits_npz(tmp_path, poison=bad)
    assert_refused(run(["--data-kind", "tensors", "--data", data, "--random-init", *FAST[4:]]),
                   "non-finite")  # fmt: skip


def test_empty_dataset(tmp_path: Path) -> None:
    data = digits_npz(tmp_path, n=0)
    assert_refused(run(["--data-kind", "tensors", "--data", data, "--random-init", *FAST[4:]]),
                   "empty")  # fmt: skip


def test_unknown_config_key_and_wrong_type(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path, "data: {kind: digits, per_clas: 3}\n")
    assert_refused(run(["--config", cfg]), "data.per_clas: unknown key (did you mean per_class?)")
    cfg = write_yaml(tmp_path, "scores: {max_iter: lots}\n")
    assert_refused(run(["--config", cfg]), "scores.max_iter: expected int")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_but_absent() -> None:
    assert_refused(run(["--demo", "--device", "cuda", *FAST]), "CUDA")


def test_unwritable_output_fails_before_scanning(tmp_path: Path, monkeypatch) -> None:
    def no_scan(*args, **kwargs):
        raise AssertionError("the scan must not start")

    monkeypatch.setattr(api, "scan", no_scan)
    target = tmp_path / "no" / "such" / "dir" / "r.json"
    assert_refused(run(["--demo", "--json", str(target), *FAST]), "does not exist")
    assert_refused(run(["--demo", "-o", str(tmp_path), *FAST]), "is a directory")
    (tmp_path / "file").write_text("")
    assert_refused(run(["--demo", "--partial", str(tmp_path / "file" / "p.pt"), *FAST]))
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not _writable(ro):  # not when running as root
            assert_refused(run(["--demo", "--json", str(ro / "r.json"), *FAST]), "not writable")
    finally:
        ro.chmod(0o700)


def test_bad_flags() -> None:
    assert_refused(run(["--demo", "--fail-on", "i2f=3"]), "--fail-on")
    assert_refused(run(["--demo", "--defense", "gaussian:sigma=x"]), "--defense")
    assert_refused(run(["--demo", "--allow", "index:3"]), "--allow")
    assert_refused(run([]), "nothing to scan")
    assert_refused(run(["--demo", "--resume"]), "--resume needs")
    assert_refused(run(["--demo", "--device", "tpu"]), "--device", "leakaudit scan --help")


def test_debug_shows_the_traceback() -> None:
    result = run(["--demo", "--model", "convnet", "--debug", *FAST])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and result.stderr.strip().splitlines()[-1].startswith(
        "error: "
    )


def _writable(path: Path) -> bool:
    try:
        (path / ".probe").write_text("")
    except OSError:
        return False
    (path / ".probe").unlink()
    return True
