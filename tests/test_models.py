"""The model zoo: built-in architectures against their papers, torchvision, user factories."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest
import torch
import torchvision
from sklearn.datasets import load_digits
from torch import nn

from leakaudit.errors import InputError
from leakaudit.models import BUILTIN_MODELS, build_model


def _digits(n: int = 4) -> torch.Tensor:
    """``n`` real digit images ``[n, 1, 8, 8]`` in [0, 1]."""
    images = load_digits().images[:n] / 16.0
    return torch.tensor(images, dtype=torch.float32).unsqueeze(1)


SMALL = {"convnet": {"width": 4}, "resnet18": {"width": 4}, "resnet20": {"width": 4}}


@pytest.mark.parametrize("name", BUILTIN_MODELS)
@pytest.mark.parametrize("size", [8, 16, 32])
@pytest.mark.parametrize("channels", [1, 3])
def test_builtin_maps_images_to_logits(name: str, size: int, channels: int) -> None:
    model = build_model(
        name, num_classes=7, in_channels=channels, image_size=size, kwargs=SMALL.get(name)
    )
    x = torch.linspace(0, 1, 2 * channels * size * size).reshape(2, channels, size, size)
    assert model(x).shape == (2, 7)


@pytest.mark.parametrize(("size", "features"), [(8, 48), (16, 192), (28, 588), (32, 768)])
def test_lenet_matches_dlg_reference_layout(size: int, features: int) -> None:
    # 768 for CIFAR and 588 for 28×28 are the hidden sizes hard-wired in the DLG code.
    model = build_model("lenet", num_classes=10, in_channels=3, image_size=size)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (12, (5, 5), (2, 2), (2, 2)),
        (12, (5, 5), (2, 2), (2, 2)),
        (12, (5, 5), (1, 1), (2, 2)),
    ]
    assert sum(isinstance(m, nn.Sigmoid) for m in model.modules()) == 3
    assert model.fc[0].in_features == features
    assert list(model.state_dict()) == [
        "body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias",
        "body.4.weight", "body.4.bias", "fc.0.weight", "fc.0.bias",
    ]  # fmt: skip


def test_lenet_dlg_init_is_uniform_half() -> None:
    torch.manual_seed(0)
    default = build_model("lenet", num_classes=10, in_channels=1, image_size=8)
    dlg = build_model("lenet", num_classes=10, in_channels=1, image_size=8, kwargs={"init": "dlg"})
    # PyTorch's default bound for the first conv is 1/sqrt(fan_in) = 1/5.
    assert default.body[0].weight.abs().max() <= 1 / math.sqrt(25) + 1e-6
    for p in dlg.parameters():
        assert p.min() >= -0.5 and p.max() <= 0.5
    weights = torch.cat([p.flatten() for p in dlg.parameters()])
    assert weights.min() < -0.45 and weights.max() > 0.45
    assert abs(weights.mean().item()) < 0.05  # mean of U(-0.5, 0.5) over ~1k draws
    with pytest.raises(InputError, match="init"):
        build_model("lenet", num_classes=10, kwargs={"init": "xavier"})


def test_resnet_parameter_counts_match_the_papers() -> None:
    # He et al. 2016, Table 6: ResNet-20 has 0.27M parameters; CIFAR ResNet-18 has 11.17M.
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert round(count(build_model("resnet20", num_classes=10)) / 1e6, 2) == 0.27
    assert round(count(build_model("resnet18", num_classes=10)) / 1e6, 2) == 11.17
    r20 = build_model("resnet20", num_classes=10)
    assert sum(isinstance(m, nn.Conv2d) for m in r20.modules()) == 19  # + linear = 20 layers
    assert not any("shortcut" in k for k in r20.state_dict())  # option A: parameter-free


def test_resnet18_has_cifar_stem() -> None:
    model = build_model("resnet18", num_classes=10, kwargs={"width": 8})
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())


def test_convnet_width_and_depth() -> None:
    model = build_model("convnet", num_classes=3, kwargs={"width": 5, "depth": 2})
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [5, 10]
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    plain = build_model("convnet", num_classes=3, kwargs={"batchnorm": False})
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())


def test_lenet_runs_on_real_digits() -> None:
    torch.manual_seed(0)
    model = build_model("lenet", num_classes=10, in_channels=1, image_size=8)
    logits = model(_digits())
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["torchvision:resnet18", "squeezenet1_0"])
def test_torchvision_models_by_name(name: str) -> None:
    model = build_model(name, num_classes=5)
    assert type(model).__module__.startswith("torchvision.models")
    model.eval()
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 5)


def test_torchvision_refuses_pretrained_weights_and_grayscale() -> None:
    with pytest.raises(InputError, match="never downloads"):
        build_model("torchvision:resnet18", num_classes=5, kwargs={"weights": "DEFAULT"})
    with pytest.raises(InputError, match="3-channel"):
        build_model("torchvision:resnet18", num_classes=5, in_channels=1)
    assert isinstance(build_model("resnet18", num_classes=5), nn.Module)  # builtin wins
    assert not isinstance(build_model("resnet18", num_classes=5), torchvision.models.ResNet)


def test_unknown_name_lists_choices_and_suggests() -> None:
    with pytest.raises(InputError) as info:
        build_model("resnet2O", num_classes=10)
    message = str(info.value)
    assert "did you mean 'resnet20'" in message
    assert all(name in message for name in BUILTIN_MODELS) and "\n" not in message


def test_unknown_builtin_kwarg_names_accepted_ones() -> None:
    with pytest.raises(InputError, match=r"'depth'.*accepted: init"):
        build_model("lenet", num_classes=10, kwargs={"depth": 3})


FACTORY = """
import torch.nn as nn

def build(num_classes, hidden=3):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.Linear(hidden, num_classes))

def build_fixed(hidden=2):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden))

def build_sized(num_classes, in_channels, image_size):
    return nn.Linear(in_channels * image_size**2, num_classes)

def broken(num_classes):
    raise ValueError("no GPU-only layers on CPU")

def not_a_model(num_classes):
    return 42

class Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.fc = nn.Linear(64, num_classes)
"""


@pytest.fixture()
def factory_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_models.py"
    path.write_text(textwrap.dedent(FACTORY))
    return path


def test_factory_file_gets_num_classes_and_kwargs(factory_file: Path) -> None:
    model = build_model(f"{factory_file}:build", num_classes=4, kwargs={"hidden": 6})
    assert model[1].out_features == 6 and model[2].out_features == 4
    assert model(_digits(2)).shape == (2, 4)


def test_factory_without_num_classes_gets_kwargs_only(factory_file: Path) -> None:
    model = build_model(f"{factory_file}:build_fixed", num_classes=4, kwargs={"hidden": 9})
    assert model[1].out_features == 9


def test_factory_named_input_geometry_is_passed(factory_file: Path) -> None:
    model = build_model(f"{factory_file}:build_sized", num_classes=4, in_channels=1, image_size=8)
    assert (model.in_features, model.out_features) == (64, 4)


def test_factory_class_and_module_syntax(factory_file: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(factory_file.parent))
    model = build_model("my_models:Net", num_classes=3)
    assert type(model).__name__ == "Net" and model.fc.out_features == 3


def test_factory_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        build_model(f"{tmp_path / 'nope.py'}:build", num_classes=3)


def test_factory_missing_module() -> None:
    with pytest.raises(
        InputError, match=r"cannot import model factory module 'no_such_pkg_x\.models'"
    ):
        build_model("no_such_pkg_x.models:build", num_classes=3)


def test_factory_missing_attribute(factory_file: Path) -> None:
    with pytest.raises(InputError, match=r"no attribute 'biuld'.*build"):
        build_model(f"{factory_file}:biuld", num_classes=3)


def test_factory_raising(factory_file: Path) -> None:
    with pytest.raises(InputError, match="raised ValueError: no GPU-only layers"):
        build_model(f"{factory_file}:broken", num_classes=3)


def test_factory_not_returning_module(factory_file: Path) -> None:
    with pytest.raises(InputError, match=r"returned int, not a torch\.nn\.Module"):
        build_model(f"{factory_file}:not_a_model", num_classes=3)


def test_factory_file_with_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.py"
    path.write_text("def build(:\n")
    with pytest.raises(InputError, match="SyntaxError"):
        build_model(f"{path}:build", num_classes=3)


@pytest.mark.parametrize("name", BUILTIN_MODELS)
def test_builtins_support_torch_func_per_sample_gradients(name: str) -> None:
    # The engine differentiates x ↦ ∇θ ℓ with torch.func; vmap over samples must equal
    # the one-sample-at-a-time autograd loop.
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, in_channels=1, image_size=8, kwargs=SMALL.get(name))
    model.eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())
    x, y = _digits(3), torch.tensor([0, 1, 2])

    def loss(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = torch.func.functional_call(model, (p, buffers), (xi[None],))
        return nn.functional.cross_entropy(logits, yi[None])

    batched = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(params, x, y)
    for i in range(3):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        for key, param in model.named_parameters():
            torch.testing.assert_close(batched[key][i], param.grad, rtol=1e-4, atol=1e-6)


def test_factory_file_may_import_its_sibling_modules(tmp_path: Path) -> None:
    pkg = tmp_path / "client_models"
    pkg.mkdir()
    (pkg / "layers_for_leakaudit_test.py").write_text(
        "from torch import nn\n\ndef head(k):\n    return nn.Linear(64, k)\n"
    )
    (pkg / "model.py").write_text(
        "from torch import nn\n"
        "from layers_for_leakaudit_test import head\n\n"
        "def build(num_classes):\n    return nn.Sequential(nn.Flatten(), head(num_classes))\n"
    )
    model = build_model(f"{pkg / 'model.py'}:build", num_classes=10)
    x = torch.as_tensor(load_digits().data[:2], dtype=torch.float32).reshape(2, 1, 8, 8)
    assert model(x).shape == (2, 10)
