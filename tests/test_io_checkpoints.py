"""Checkpoint loading: every format round-trips, unsafe pickles are refused, bad files explained."""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from leakaudit.errors import InputError
from leakaudit.io import load_checkpoint, sha256_file
from leakaudit.models import build_model
from tests.helpers_io import digit_batch


def _lenet(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("lenet", num_classes=10, in_channels=1, image_size=8, kwargs={"init": "dlg"})


def _convnet(seed: int) -> nn.Module:
    """A BatchNorm model whose running statistics come from real digits."""
    torch.manual_seed(seed)
    model = build_model("convnet", num_classes=10, in_channels=1, image_size=8, kwargs={"width": 4})
    model.train()
    with torch.no_grad():
        model(digit_batch(16))
    return model.eval()


def _assert_same_outputs(loaded: nn.Module, original: nn.Module) -> None:
    x = digit_batch(8)
    loaded.eval()
    original.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), original(x), rtol=0, atol=0)


def _differs(a: nn.Module, b: nn.Module) -> bool:
    x = digit_batch(8)
    with torch.no_grad():
        return not torch.equal(a.eval()(x), b.eval()(x))


@pytest.fixture(params=["lenet", "convnet"])
def pair(request: pytest.FixtureRequest) -> tuple[nn.Module, nn.Module]:
    """(original, fresh) models of one architecture with different weights."""
    make = _lenet if request.param == "lenet" else _convnet
    original, fresh = make(0), make(1)
    assert _differs(original, fresh)
    return original, fresh


def test_plain_state_dict_round_trip(tmp_path: Path, pair: tuple[nn.Module, nn.Module]) -> None:
    original, fresh = pair
    path = tmp_path / "weights.pth"
    torch.save(original.state_dict(), path)
    loaded, info = load_checkpoint(path, fresh)
    _assert_same_outputs(loaded, original)
    assert loaded is fresh
    assert (info.format, info.trusted, info.nested_key, info.stripped_prefix) == (
        "state_dict",
        False,
        None,
        None,
    )
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_legacy_torch_save_format(tmp_path: Path) -> None:
    original, fresh = _lenet(0), _lenet(1)
    path = tmp_path / "legacy.bin"
    torch.save(original.state_dict(), path, _use_new_zipfile_serialization=False)
    _assert_same_outputs(load_checkpoint(path, fresh)[0], original)


@pytest.mark.parametrize("key", ["state_dict", "model", "net", "model_state_dict"])
def test_nested_state_dict(tmp_path: Path, key: str) -> None:
    original, fresh = _lenet(0), _lenet(1)
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 7, "round": 3, key: original.state_dict(), "lr": 0.01}, path)
    loaded, info = load_checkpoint(path, fresh)
    _assert_same_outputs(loaded, original)
    assert info.nested_key == key


def test_lightning_checkpoint_prefers_weights_over_ema(tmp_path: Path) -> None:
    original, ema, fresh = _lenet(0), _lenet(2), _lenet(1)
    path = tmp_path / "epoch=3.ckpt"
    torch.save(
        {
            "epoch": 3,
            "global_step": 120,
            "state_dict_ema": {f"model.{k}": v for k, v in ema.state_dict().items()},
            "state_dict": {f"model.{k}": v for k, v in original.state_dict().items()},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1}]}],
        },
        path,
    )
    loaded, info = load_checkpoint(path, fresh)
    _assert_same_outputs(loaded, original)
    assert (info.nested_key, info.stripped_prefix) == ("state_dict", "model.")


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_wrapper_prefixes_are_stripped(tmp_path: Path, prefix: str) -> None:
    original, fresh = _convnet(0), _convnet(1)
    path = tmp_path / "ddp.pt"
    torch.save(OrderedDict((prefix + k, v) for k, v in original.state_dict().items()), path)
    loaded, info = load_checkpoint(path, fresh)
    _assert_same_outputs(loaded, original)
    assert info.stripped_prefix == prefix


def test_real_dataparallel_state_dict(tmp_path: Path) -> None:
    original, fresh = _lenet(0), _lenet(1)
    path = tmp_path / "dp.pt"
    torch.save(nn.DataParallel(original).state_dict(), path)
    loaded, info = load_checkpoint(path, fresh)
    _assert_same_outputs(loaded, original)
    assert info.stripped_prefix == "module."


@pytest.mark.parametrize("name", ["model.safetensors", "model.pt"])
def test_safetensors_detected_by_content(tmp_path: Path, name: str) -> None:
    original, fresh = _convnet(0), _convnet(1)
    path = tmp_path / name
    save_file({k: v.contiguous() for k, v in original.state_dict().items()}, str(path))
    loaded, info = load_checkpoint(path, fresh)
    _assert_same_outputs(loaded, original)
    assert info.format == "safetensors"


def _script(model: nn.Module, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(model), str(path))


def test_torchscript_without_model(tmp_path: Path) -> None:
    original = _lenet(0)
    path = tmp_path / "scripted.pt"
    _script(original, path)
    with pytest.raises(InputError, match=r"TorchScript.*--trust-checkpoint"):
        load_checkpoint(path, None)  # an archive is code: refused without trust
    loaded, info = load_checkpoint(path, None, trust=True)
    assert isinstance(loaded, torch.jit.ScriptModule)
    _assert_same_outputs(loaded, original)
    assert info.format == "torchscript" and info.trusted


def test_torchscript_weights_into_given_model(tmp_path: Path) -> None:
    original, fresh = _convnet(0), _convnet(1)
    path = tmp_path / "scripted.zip"
    _script(original, path)
    with pytest.raises(InputError, match="--trust-checkpoint"):
        load_checkpoint(path, fresh)
    loaded, info = load_checkpoint(path, fresh, trust=True)
    assert loaded is fresh and not isinstance(loaded, torch.jit.ScriptModule)
    _assert_same_outputs(loaded, original)
    assert info.format == "torchscript"


class TrainingMeta:
    """A custom class, as training scripts pickle next to their weights."""

    def __init__(self, note: str) -> None:
        self.note = note


def test_custom_pickled_class_needs_trust(tmp_path: Path) -> None:
    original, fresh = _lenet(0), _lenet(1)
    path = tmp_path / "with_meta.pt"
    torch.save({"state_dict": original.state_dict(), "meta": TrainingMeta("round 5")}, path)
    with pytest.raises(InputError) as info:
        load_checkpoint(path, fresh)
    message = str(info.value)
    assert "--trust-checkpoint" in message and "TrainingMeta" in message
    assert "arbitrary code" in message and "\n" not in message
    assert not _differs(fresh, _lenet(1))  # untouched by the refused load
    loaded, ckpt = load_checkpoint(path, fresh, trust=True)
    _assert_same_outputs(loaded, original)
    assert ckpt.trusted and ckpt.nested_key == "state_dict"


def test_whole_pickled_module_with_trust(tmp_path: Path) -> None:
    original = _convnet(0)
    path = tmp_path / "whole.pt"
    torch.save(original, path)
    with pytest.raises(InputError, match="--trust-checkpoint"):
        load_checkpoint(path, None)
    loaded, info = load_checkpoint(path, None, trust=True)
    assert loaded is not original
    _assert_same_outputs(loaded, original)
    assert info.format == "pickled_module" and info.trusted


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt", _lenet(0))


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory"):
        load_checkpoint(tmp_path, _lenet(0))


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="is empty"):
        load_checkpoint(path, _lenet(0))


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_file(tmp_path: Path, legacy: bool) -> None:
    path = tmp_path / "cut.pt"
    torch.save(_lenet(0).state_dict(), path, _use_new_zipfile_serialization=not legacy)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_checkpoint(path, _lenet(1))


def test_truncated_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "cut.safetensors"
    save_file(dict(_lenet(0).state_dict()), str(path))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InputError, match="corrupt safetensors"):
        load_checkpoint(path, _lenet(1))


def test_unrecognised_content(tmp_path: Path) -> None:
    path = tmp_path / "notes.pt"
    path.write_text("these are not weights\n")
    with pytest.raises(InputError, match="unrecognised content"):
        load_checkpoint(path, _lenet(0))


def test_mismatch_lists_missing_and_unexpected_keys(tmp_path: Path) -> None:
    path = tmp_path / "convnet.pt"
    torch.save(_convnet(0).state_dict(), path)
    with pytest.raises(InputError) as info:
        load_checkpoint(path, _lenet(0))
    message = str(info.value)
    assert "missing keys (8): body.0.weight, body.0.bias" in message
    convnet_keys = len(_convnet(0).state_dict())
    assert f"unexpected keys ({convnet_keys}): features.0.weight" in message
    assert f"and {convnet_keys - 5} more" in message and "\n" not in message


def test_shape_mismatch_shows_both_shapes(tmp_path: Path) -> None:
    path = tmp_path / "lenet16.pt"
    torch.save(
        build_model("lenet", num_classes=10, in_channels=1, image_size=16).state_dict(), path
    )
    with pytest.raises(
        InputError, match=r"fc\.0\.weight \(checkpoint \[10, 192\] vs model \[10, 48\]\)"
    ):
        load_checkpoint(path, _lenet(0))


def test_non_strict_allows_missing_keys_only(tmp_path: Path) -> None:
    original, fresh = _lenet(0), _lenet(1)
    state = original.state_dict()
    head = {k: v for k, v in state.items() if k.startswith("fc.")}
    path = tmp_path / "head.pt"
    torch.save(head, path)
    with pytest.raises(InputError, match="missing keys"):
        load_checkpoint(path, _lenet(1))
    loaded, _ = load_checkpoint(path, fresh, strict=False)
    torch.testing.assert_close(loaded.fc[0].weight, state["fc.0.weight"])
    assert not torch.equal(loaded.body[0].weight, state["body.0.weight"])


def test_non_tensor_content(tmp_path: Path) -> None:
    path = tmp_path / "hparams.pt"
    torch.save({"lr": 0.1, "epochs": 30, "optimizer": "sgd"}, path)
    with pytest.raises(InputError, match="holds no state_dict"):
        load_checkpoint(path, _lenet(0))
    torch.save([1, 2, 3], path)
    with pytest.raises(InputError, match="holds a list"):
        load_checkpoint(path, _lenet(0))


def test_state_dict_without_model(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(_lenet(0).state_dict(), path)
    with pytest.raises(InputError, match="name the architecture"):
        load_checkpoint(path, None)


def test_sha256_of_known_bytes(tmp_path: Path) -> None:
    path = tmp_path / "abc"
    path.write_bytes(b"abc")  # FIPS 180-2 test vector
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_torchscript_mismatching_model_suggests_leaving_it_unset(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    _script(_lenet(0), path)
    with pytest.raises(InputError, match=r"missing keys.*leave the model unset"):
        load_checkpoint(path, _convnet(0), trust=True)
