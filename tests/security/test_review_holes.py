"""Holes a security review found after issue 8 was fixed: outputs that replace the run's
own inputs, reports that exhaust memory or give silently wrong results, control
characters that reach the terminal, and messages that name nothing.

Every hostile file is built here, at test time; files the user owns are hashed before
and after, and "before any work" is checked by making the work itself fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from leakaudit import api
from leakaudit.cli import app
from leakaudit.demo import DEMO_CHECKPOINT
from leakaudit.models.factory import is_factory_spec
from tests.helpers_cli import assert_refused
from tests.helpers_io import digit_images
from tests.security.test_datasets import time_limit
from tests.test_cli_errors import FAST

#: The smallest validation: three samples, one attack, the fast budget.
TINY = ["--budget", "fast", "--n-samples", "3", "--attacks", "dlg", "--no-progress"]


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def no_work(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("the run must be refused before any work starts")


@pytest.fixture
def idle(monkeypatch) -> None:
    """Scanning, loading and validating fail the test: refusals must come first."""
    monkeypatch.setattr(api, "scan", no_work)
    monkeypatch.setattr(api, "load_inputs", no_work)
    monkeypatch.setattr(api, "validate", no_work)


def digits_npz(path: Path, n: int = 6) -> Path:
    images, labels = digit_images(n)
    np.savez(path, x=(images[:, None] / 16.0).astype(np.float32), y=labels)
    return path


def digit_folder(root: Path, classes: tuple[str, ...], per_class: int = 2) -> Path:
    """An ImageFolder of real 8×8 digits, one folder per class name."""
    images, _ = digit_images(len(classes) * per_class)
    for i, image in enumerate(images):
        folder = root / classes[i // per_class]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 15).astype(np.uint8)).save(folder / f"img{i}.png")
    return root


# --- 1. an output never replaces an input of the same run -------------------------------


def test_scan_json_over_the_checkpoint(tmp_path: Path, idle) -> None:
    ckpt = tmp_path / "ck.safetensors"
    shutil.copyfile(DEMO_CHECKPOINT, ckpt)
    before = sha256(ckpt)
    for flag in ("--json", "--output", "--partial"):
        result = cli("scan", "--demo", "--checkpoint", str(ckpt), *FAST, flag, str(ckpt))
        assert_refused(result, f"{flag} {ckpt}", "the checkpoint", "choose another path")
    assert sha256(ckpt) == before


def test_scan_output_over_the_data_config_and_factory(tmp_path: Path, idle) -> None:
    data = digits_npz(tmp_path / "d.npz")
    factory = tmp_path / "net.py"
    marker = tmp_path / "IMPORTED"
    factory.write_text(f"open({str(marker)!r}, 'w')\ndef build(**kw): pass\n")
    config = tmp_path / "c.yaml"
    config.write_text("model: {name: lenet, random_init: true}\ndata: {kind: digits, first: 4}\n")
    before = {p: sha256(p) for p in (data, factory, config)}
    tensors = ["--data", str(data), "--data-kind", "tensors", "--random-init", "--no-progress"]
    assert_refused(cli("scan", *tensors, "--output", str(data)), "the data")
    assert_refused(cli("scan", "--config", str(config), "--json", str(config)), "the config")
    model = ["--model", f"{factory}:build"]
    assert_refused(cli("scan", *tensors, *model, "--json", str(factory)), "model factory")
    assert {p: sha256(p) for p in before} == before
    assert not marker.exists()


def test_links_to_an_input_are_the_input(tmp_path: Path, idle) -> None:
    data = digits_npz(tmp_path / "d.npz")
    before = sha256(data)
    (tmp_path / "soft.json").symlink_to(data)
    os.link(data, tmp_path / "hard.json")
    tensors = ["--data", str(data), "--data-kind", "tensors", "--random-init", "--no-progress"]
    for name in ("soft.json", "hard.json"):
        assert_refused(cli("scan", *tensors, "--json", str(tmp_path / name)), "the data")
    assert sha256(data) == before


def test_torchvision_format_files_and_imagefolder_roots(tmp_path: Path, idle) -> None:
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = raw / "train-images-idx3-ubyte"
    images.write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 12)
    mnist = ["--data", str(tmp_path / "mnist"), "--data-kind", "mnist", "--random-init"]
    assert_refused(cli("scan", *mnist, "--no-progress", "--json", str(images)), "the data")
    assert images.read_bytes() == b"\x00\x00\x08\x03" + b"\x00" * 12
    root = digit_folder(tmp_path / "folder", ("a", "b"))
    folder = ["--data", str(root), "--data-kind", "imagefolder", "--random-init"]
    for target in (root / "a" / "new.png", root / "r.json"):
        result = cli("scan", *folder, "--no-progress", "--output", str(target))
        assert_refused(result, "inside the ImageFolder")
        assert not target.exists()


def write_report(tmp_path: Path, report: dict[str, Any], name: str = "crafted.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(report))
    return path


def test_validate_outputs_over_its_inputs(tmp_path: Path, scanned, idle) -> None:
    report, ckpt = scanned
    path = write_report(tmp_path, report, "r.json")
    before = {p: sha256(p) for p in (path, ckpt)}
    assert_refused(cli("validate", "--report", str(path), *TINY, "--json", str(path)),
                   f"--json {path}", "the scan report")  # fmt: skip
    assert_refused(cli("validate", "--report", str(path), *TINY, "--figure", str(ckpt)),
                   "--figure", "the checkpoint")  # fmt: skip
    config = tmp_path / "c.yaml"
    config.write_text("model: {name: lenet, random_init: true}\ndata: {kind: digits, first: 4}\n")
    config_bytes = config.read_bytes()
    assert_refused(cli("validate", "--config", str(config), *TINY, "--json", str(config)),
                   "the config")  # fmt: skip
    assert {p: sha256(p) for p in before} == before
    assert config.read_bytes() == config_bytes


# --- 2. denial of service from a report, a config or a flag -----------------------------


def test_report_that_is_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "r.json"
    os.mkfifo(fifo)
    start = time.perf_counter()
    with time_limit(20):
        assert_refused(cli("validate", "--report", str(fifo), *TINY), "not a regular file")
        assert_refused(cli("validate", "--report", "/dev/zero", *TINY), "not a regular file")
    assert time.perf_counter() - start < 10


def test_report_over_the_size_cap(tmp_path: Path) -> None:
    from leakaudit.report.reading import MAX_REPORT_BYTES

    big = tmp_path / "r.json"
    with open(big, "wb") as fh:
        fh.truncate(MAX_REPORT_BYTES + 1)  # sparse: nothing is written
    start = time.perf_counter()
    assert_refused(cli("validate", "--report", str(big), *TINY), "too large")
    assert time.perf_counter() - start < 5


def test_num_classes_is_bounded_before_a_model_is_built(tmp_path: Path, scanned) -> None:
    digits = ["--data-kind", "digits", "--first", "4", "--no-progress", "--random-init"]
    for n in ("1000000000000", "100001"):
        assert_refused(cli("scan", *digits, "--num-classes", n), "num_classes", "100000")
    report, _ = scanned
    crafted = json.loads(json.dumps(report))
    crafted["config"]["model"]["num_classes"] = 10**12
    path = write_report(tmp_path, crafted)
    assert_refused(cli("validate", "--report", str(path), *TINY), "num_classes")


@pytest.mark.parametrize(
    "name, kwargs",
    [("convnet", {"width": 10**6}), ("torchvision:resnet18", {"width_per_group": 10**6})],
)
def test_a_report_cannot_size_the_model(tmp_path: Path, scanned, name, kwargs) -> None:
    report, _ = scanned
    crafted = json.loads(json.dumps(report))
    crafted["config"]["model"].update(name=name, kwargs=kwargs)
    path = write_report(tmp_path, crafted)
    key = next(iter(kwargs))
    assert_refused(cli("validate", "--report", str(path), *TINY), repr(key), "--config")


# --- 3. crafted reports: every bad shape is one line naming the problem -----------------


def _set_index(value: Any):
    def edit(r: dict[str, Any]) -> None:
        r["samples"][0]["index"] = value

    return edit


def _every_index(f):
    def edit(r: dict[str, Any]) -> None:
        for i, s in enumerate(r["samples"]):
            s["index"] = f(i)

    return edit


def _nest(r: dict[str, Any]) -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(900):
        node["k"] = {}
        node = node["k"]
    r["config"]["model"]["kwargs"] = deep


CRAFTED = {
    "negative": (_every_index(lambda i: -1 - i), "index"),
    "fractional": (_set_index(1.5), "samples[0].index"),
    "huge": (_set_index(10**30), "samples[0].index"),
    "duplicate": (_every_index(lambda i: 0), "duplicate"),
    "out-of-range": (_every_index(lambda i: 99 + i), "99"),
    "no-scores": (lambda r: r["samples"][0].pop("scores"), "scores"),
    "sample-list": (lambda r: r["samples"].__setitem__(0, [1, 2]), "samples[0]"),
    "paths-list": (lambda r: r.__setitem__("paths", [1]), "paths"),
    "label-text": (lambda r: r["samples"][0].__setitem__("label", "cat"), "samples[0].label"),
    "nested-kwargs": (_nest, "nested"),
    "schema-999": (lambda r: r.__setitem__("schema_version", "999.0"), "999.0"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_report_shapes(tmp_path: Path, scanned, case: str) -> None:
    report, _ = scanned
    edit, needle = CRAFTED[case]
    crafted = json.loads(json.dumps(report))
    edit(crafted)
    path = write_report(tmp_path, crafted)
    assert_refused(cli("validate", "--report", str(path), *TINY), needle)


# --- 4. control characters, and paths under --redact ------------------------------------

EVIL = "\x1b[31mEVIL\x1b[0m|`<b>x</b>`"


@pytest.mark.parametrize("fmt", ["table", "md"])
def test_control_characters_never_reach_the_terminal(tmp_path: Path, fmt: str) -> None:
    root = digit_folder(tmp_path / "data", (EVIL + "[", "b"))
    # The id "<EVIL>[/]img0.png" holds a closing rich tag with nothing to close.
    (root / f"{EVIL}[" / "img0.png").rename(root / f"{EVIL}[" / "]img0.png")
    args = ["scan", "--data", str(root), "--data-kind", "imagefolder", "--random-init",
            "--max-iter", "2", "--n-probes", "1", "--no-progress", "--format", fmt]  # fmt: skip
    result = cli(*args)
    assert result.exit_code in (0, 1), result.output
    assert "\x1b" not in result.stdout and "\x1b" not in result.stderr
    assert "\\x1b[31mEVIL" in result.stdout  # escaped, still recognisable
    if fmt == "md":
        assert "<b>" not in result.stdout.replace("`<b>x</b>`", "")


def test_redacted_scan_prints_no_skipped_paths(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = digit_folder(tmp_path / "data", ("a", "b"))
    (root / "secret_patient_link").symlink_to(root / "a", target_is_directory=True)
    args = ["scan", "--data", str(root), "--data-kind", "imagefolder", "--random-init",
            "--max-iter", "2", "--n-probes", "1", "--no-progress"]  # fmt: skip
    plain = cli(*args)
    assert "secret_patient_link" in plain.stderr  # without --redact the name helps
    redacted = cli(*args, "--redact")
    assert redacted.exit_code in (0, 1), redacted.output
    assert "skipped 1 entries" in redacted.stderr
    assert "secret_patient_link" not in redacted.output


# --- 5. torchvision names, refusal messages ---------------------------------------------


def test_a_report_may_name_a_torchvision_model(tmp_path: Path, scanned) -> None:
    assert not is_factory_spec("torchvision:alexnet")
    assert is_factory_spec("os:system") and is_factory_spec("net.py:build")
    report, _ = scanned
    crafted = json.loads(json.dumps(report))
    crafted["config"]["model"]["name"] = "torchvision:alexnet"
    path = write_report(tmp_path, crafted)
    # Past the report's checks, the model itself refuses the 1-channel digits.
    assert_refused(cli("validate", "--report", str(path), *TINY), "3-channel")


class _Touch:
    """Unpickling this creates ``marker`` (through ``open``, or a shell with ``shell``)."""

    def __init__(self, marker: Path, shell: bool = False) -> None:
        self.marker, self.shell = str(marker), shell

    def __reduce__(self):
        if self.shell:
            return (os.system, (f"touch {self.marker}",))
        return (open, (self.marker, "w"))


def test_pickled_data_file_is_refused_without_torchs_advice(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    data = tmp_path / "d.pt"
    data.write_bytes(pickle.dumps({"x": _Touch(marker)}, protocol=2))
    args = ["scan", "--data", str(data), "--data-kind", "tensors", "--random-init",
            "--no-progress"]  # fmt: skip
    result = cli(*args)
    assert_refused(result, str(data), "the Python object io.open")
    assert "weights_only` set to `False`" not in result.stderr
    # torch words the refusal of a blocked module (os) differently: still named.
    data.write_bytes(pickle.dumps(_Touch(marker, shell=True), protocol=2))
    result = cli(*args)
    assert_refused(result, str(data), "the Python object posix.system")
    assert "weights_only` set to `False`" not in result.stderr
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(pickle.dumps(_Touch(marker, shell=True), protocol=2))
    result = cli("scan", "--demo", "--checkpoint", str(ckpt), *FAST)
    assert_refused(result, "the Python object posix.system", "--trust-checkpoint")
    assert not marker.exists()
