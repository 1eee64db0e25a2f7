"""Hostile and broken checkpoints: code in TorchScript archives, non-finite or corrupt
weights, a silently random model, and input errors that must not crash (exit 3).

Each fixture is built here, in ``tmp_path``; see ``docs/security.md`` for the trust model.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from leakaudit import api
from leakaudit.config import DataConfig, ModelConfig, ScanConfig
from leakaudit.demo import DEMO_CHECKPOINT
from leakaudit.errors import ConfigError, InputError
from leakaudit.models import LeNet, build_model
from tests.helpers_cli import assert_refused
from tests.helpers_io import digit_images
from tests.test_cli_errors import FAST, run

QUICK = FAST[4:]  # --max-iter 4 --n-probes 1 --no-progress


def _demo_weights() -> dict[str, torch.Tensor]:
    return load_file(str(DEMO_CHECKPOINT))


def _scan_json(tmp_path: Path, args: list[str], name: str = "r.json") -> tuple[int, dict]:
    out = tmp_path / name
    result = run([*args, "--json", str(out)])
    assert result.exit_code in (0, 1), (result.exit_code, result.stderr)
    return result.exit_code, json.loads(out.read_text())


# --- 1. TorchScript is code -------------------------------------------------------------


class _Payload(nn.Module):
    """Writes a file with ``torch.from_file(shared=True)`` when unpickled and when run."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        written = torch.from_file(self.marker, shared=True, size=8, dtype=torch.uint8)
        written.fill_(65)
        return x + written.sum().float() * 0

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        written = torch.from_file(self.marker + ".load", shared=True, size=8, dtype=torch.uint8)
        written.fill_(66)
        self.marker = self.marker + str(int(written.sum()))


class _Trojan(nn.Module):
    """The demo LeNet behind a payload: scores like the demo, writes files as a side effect."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.payload = _Payload(marker)
        self.net = LeNet(10, 1, 8)
        self.net.load_state_dict(_demo_weights())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.payload(x))


def _jit_save(module: nn.Module, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(module), str(path))


def _markers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.glob("marker*"))


@pytest.mark.parametrize("as_model", [True, False], ids=["model-torchscript", "lenet-weights"])
def test_torchscript_needs_trust(tmp_path: Path, as_model: bool) -> None:
    archive = tmp_path / "trojan.pt"
    _jit_save(_Trojan(str(tmp_path / "marker")), archive)
    assert _markers(tmp_path) == []  # scripting and saving ran nothing
    model = ["--model", "torchscript"] if as_model else []
    result = run(["--demo", *model, "--checkpoint", str(archive), *FAST])
    assert_refused(result, "TorchScript", "--trust-checkpoint", str(archive))
    assert _markers(tmp_path) == []


def test_torchscript_still_loads_with_trust(tmp_path: Path) -> None:
    archive = tmp_path / "scripted.pt"
    net = LeNet(10, 1, 8)
    net.load_state_dict(_demo_weights())
    _jit_save(net, archive)
    args = ["--demo", "--model", "torchscript", "--checkpoint", str(archive), *FAST]
    _, report = _scan_json(tmp_path, [*args, "--trust-checkpoint"])
    assert report["model"]["checkpoint"]["format"] == "torchscript"
    assert report["model"]["checkpoint"]["trusted"] is True


# --- 2. Broken weights ------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_non_finite_weight_refused(tmp_path: Path, bad: float, fmt: str) -> None:
    weights = _demo_weights()
    weights["body.2.weight"][0, 0, 1, 1] = bad
    path = tmp_path / f"w.{fmt}"
    torch.save(weights, path) if fmt == "pt" else save_file(weights, str(path))
    result = run(["--demo", "--checkpoint", str(path), *FAST])
    assert_refused(result, "body.2.weight", "non-finite")


def _flip_entry_bytes(path: Path, suffix: str) -> None:
    """Flip bytes in the middle of the (stored, uncompressed) zip entry ending in ``suffix``."""
    with zipfile.ZipFile(path) as archive:
        entry = next(i for i in archive.infolist() if i.filename.endswith(suffix))
    assert entry.compress_type == zipfile.ZIP_STORED
    blob = bytearray(path.read_bytes())
    name_len = int.from_bytes(blob[entry.header_offset + 26 : entry.header_offset + 28], "little")
    extra_len = int.from_bytes(blob[entry.header_offset + 28 : entry.header_offset + 30], "little")
    start = entry.header_offset + 30 + name_len + extra_len + entry.file_size // 2
    blob[start : start + 4] = bytes(b ^ 0x40 for b in blob[start : start + 4])
    path.write_bytes(bytes(blob))


def test_zip_crc_mismatch_refused(tmp_path: Path) -> None:
    weights = _demo_weights()
    path = tmp_path / "flipped.pt"
    torch.save(weights, path)
    _flip_entry_bytes(path, f"/data/{list(weights).index('fc.0.weight')}")  # storages in order
    # torch itself does not notice: the flipped weights load as they are.
    assert not torch.equal(
        torch.load(path, weights_only=True)["fc.0.weight"], weights["fc.0.weight"]
    )
    result = run(["--demo", "--checkpoint", str(path), *FAST])
    assert_refused(result, str(path), "CRC")


@pytest.mark.parametrize("damage", ["truncate", "append"])
def test_safetensors_length_mismatch_refused(tmp_path: Path, damage: str) -> None:
    blob = DEMO_CHECKPOINT.read_bytes()
    path = tmp_path / "w.safetensors"
    path.write_bytes(blob[:-16] if damage == "truncate" else blob + b"\0" * 16)
    assert_refused(run(["--demo", "--checkpoint", str(path), *FAST]), str(path))


# --- 3. No checkpoint is no longer a silent random model --------------------------------

DIGITS = ["--data-kind", "digits", "--first", "40", "--per-class", "1", *QUICK]


def test_no_checkpoint_refused() -> None:
    assert_refused(run(DIGITS), "no checkpoint", "--checkpoint", "--random-init")
    cfg = ScanConfig(data=DataConfig(kind="digits", first=4))
    with pytest.raises(ConfigError, match="--random-init"):
        api.scan(cfg)


def test_random_init_is_seeded_and_reported(tmp_path: Path) -> None:
    _, first = _scan_json(tmp_path, [*DIGITS, "--random-init"], "a.json")
    _, again = _scan_json(tmp_path, [*DIGITS, "--random-init"], "b.json")
    assert len(first["samples"]) == 10
    assert first["samples"] == again["samples"]
    assert first["config"]["model"]["random_init"] is True
    assert any("random" in w for w in first["warnings"])
    _, other = _scan_json(tmp_path, [*DIGITS, "--random-init", "--seed", "1"], "c.json")
    assert other["samples"] != first["samples"]


def test_random_init_and_checkpoint_exclude_each_other() -> None:
    assert_refused(run(["--demo", "--random-init", *FAST]), "--random-init", "--checkpoint")


# --- 4. Input errors that crashed (exit 3) ----------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_torch_file_named_safetensors_loads_by_content(tmp_path: Path, legacy: bool) -> None:
    path = tmp_path / "w.safetensors"
    torch.save(_demo_weights(), path, _use_new_zipfile_serialization=not legacy)
    _, report = _scan_json(tmp_path, ["--demo", "--checkpoint", str(path), *FAST])
    assert report["model"]["checkpoint"]["format"] == "state_dict"
    _, demo = _scan_json(tmp_path, ["--demo", *FAST], "demo.json")
    assert report["samples"] == demo["samples"]


def test_pickle_of_objects_named_safetensors_needs_trust(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    torch.save({"state_dict": _demo_weights(), "opt": torch.optim.SGD}, path)
    assert_refused(run(["--demo", "--checkpoint", str(path), *FAST]), "--trust-checkpoint")


def test_num_classes_not_an_int(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {name: lenet, num_classes: ten}\ndata: {kind: digits, first: 4}\n")
    assert_refused(run(["--config", str(cfg), *QUICK]), "model.num_classes")
    with pytest.raises(ConfigError, match="num_classes"):
        ModelConfig(num_classes="ten")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="num_classes"):
        build_model("lenet", num_classes="ten")  # type: ignore[arg-type]
    images, labels = digit_images(4)
    data = tmp_path / "d.pt"
    torch.save({"x": torch.tensor(images[:, None] / 16.0), "y": torch.tensor(labels),
                "num_classes": "ten"}, data)  # fmt: skip
    args = ["--data-kind", "tensors", "--data", str(data), "--random-init", *QUICK]
    assert_refused(run(args), "num_classes")


def _npz_with_label(tmp_path: Path, label: int) -> str:
    images, labels = digit_images(4)
    labels = labels.copy()
    labels[2] = label
    path = tmp_path / "d.npz"
    np.savez(path, x=(images[:, None] / 16.0).astype(np.float32), y=labels)
    return str(path)


@pytest.mark.parametrize("model", [["--checkpoint", str(DEMO_CHECKPOINT)], ["--random-init"]])
def test_huge_label_refused_before_building(tmp_path: Path, model: list[str]) -> None:
    data = _npz_with_label(tmp_path, 10**9)
    result = run(["--data-kind", "tensors", "--data", data, *model, *QUICK])
    assert_refused(result, "label 1000000000", "index:2")


@pytest.mark.parametrize("label", [12, -1])
def test_label_outside_the_checkpoints_classes(tmp_path: Path, label: int) -> None:
    data = _npz_with_label(tmp_path, label)
    args = ["--data-kind", "tensors", "--data", data, "--checkpoint", str(DEMO_CHECKPOINT)]
    assert_refused(run([*args, *QUICK]), f"label {label}", "index:2", "10 classes")
