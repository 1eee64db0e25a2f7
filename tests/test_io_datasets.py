"""Dataset loading from every supported layout, checked pixel by pixel against the source
arrays (scikit-learn digits, scikit-image's astronaut), plus one test per input error."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from sklearn.datasets import load_digits

from leakaudit.errors import ConfigError, InputError
from leakaudit.io.datasets import DataSpec, LoadedDataset, check_dataset, load_dataset
from tests.helpers_io import (
    astronaut_patches,
    digit_images,
    write_cifar,
    write_idx,
    write_imagefolder,
    write_mnist,
)


def _stack(loaded: LoadedDataset) -> tuple[torch.Tensor, list[int]]:
    pairs = [loaded.dataset[i] for i in range(len(loaded.dataset))]
    return torch.stack([x for x, _ in pairs]), [y for _, y in pairs]


def _as_chw(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` → float ``[N, 3, H, W]`` in [0, 1]."""
    return torch.tensor(images.transpose(0, 3, 1, 2) / 255.0, dtype=torch.float32)


PATCH_LABELS = np.array([1, 0, 1, 0, 2, 1])


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    write_imagefolder(root, astronaut_patches(6), PATCH_LABELS)
    return root


def test_imagefolder_pixels_ids_and_labels(folder: Path) -> None:
    loaded = load_dataset(DataSpec(kind="imagefolder", root=str(folder)))
    # ImageFolder order: by class directory, then file name.
    expected = sorted(range(6), key=lambda i: (PATCH_LABELS[i], i))
    assert loaded.ids == [f"class_{PATCH_LABELS[i]}/img_{i:03d}.png" for i in expected]
    x, y = _stack(loaded)
    torch.testing.assert_close(x, _as_chw(astronaut_patches(6)[expected]), rtol=0, atol=0)
    assert y == PATCH_LABELS[expected].tolist() == loaded.labels.tolist()
    assert loaded.num_classes == 3 and loaded.input_shape == (3, 32, 32)
    assert loaded.description["classes"] == ["class_0", "class_1", "class_2"]
    check_dataset(loaded)


def test_imagefolder_grayscale_is_itu601_luma(folder: Path) -> None:
    loaded = load_dataset(DataSpec(kind="imagefolder", root=str(folder), channels=1, first=2))
    patches = astronaut_patches(6).astype(np.float64)
    expected_index = [1, 3]  # first two in ImageFolder order: class_0/img_001, class_0/img_003
    luma = patches[expected_index] @ np.array([0.299, 0.587, 0.114]) / 255.0
    x, _ = _stack(loaded)
    assert x.shape == (2, 1, 32, 32)
    np.testing.assert_allclose(x[:, 0].numpy(), luma, atol=1 / 255 + 1e-6)


def test_imagefolder_resize_matches_pil_bilinear(folder: Path) -> None:
    loaded = load_dataset(DataSpec(kind="imagefolder", root=str(folder), resize=16, first=1))
    x, _ = _stack(loaded)
    source = Image.fromarray(astronaut_patches(6)[1])
    reference = np.asarray(source.resize((16, 16), Image.Resampling.BILINEAR)) / 255.0
    assert x.shape == (1, 3, 16, 16)
    # torchvision's antialiased bilinear follows PIL's filter; PIL rounds to 8 bits.
    np.testing.assert_allclose(x[0].permute(1, 2, 0).numpy(), reference, atol=2 / 255)


@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar10_batches(tmp_path: Path, split: str) -> None:
    patches = astronaut_patches(10)
    labels = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3])
    write_cifar(tmp_path, patches, labels)
    loaded = load_dataset(DataSpec(kind="cifar10", root=str(tmp_path), split=split))
    x, y = _stack(loaded)
    torch.testing.assert_close(x, _as_chw(patches), rtol=0, atol=0)
    assert y == labels.tolist() and loaded.num_classes == 10
    assert loaded.ids[:2] == [f"{split}:0", f"{split}:1"]


def test_cifar100_fine_labels_and_direct_batch_dir(tmp_path: Path) -> None:
    patches = astronaut_patches(4)
    labels = np.array([99, 0, 42, 7])
    write_cifar(tmp_path, patches, labels, hundred=True)
    spec = DataSpec(kind="cifar100", root=str(tmp_path / "cifar-100-python"), split="test")
    loaded = load_dataset(spec)
    x, y = _stack(loaded)
    torch.testing.assert_close(x, _as_chw(patches), rtol=0, atol=0)
    assert y == [99, 0, 42, 7] and loaded.num_classes == 100


def test_mnist_idx_agrees_with_torchvision(tmp_path: Path) -> None:
    images, labels = digit_images(12)
    images = images * 15  # 0..240, full 8-bit range
    write_mnist(tmp_path, images, labels)
    loaded = load_dataset(DataSpec(kind="mnist", root=str(tmp_path), split="test"))
    x, y = _stack(loaded)
    reference = torchvision.datasets.MNIST(str(tmp_path), train=False, download=False)
    torch.testing.assert_close(x[:, 0], reference.data.float() / 255, rtol=0, atol=0)
    torch.testing.assert_close(x[:, 0], torch.tensor(images / 255.0, dtype=torch.float32))
    assert y == reference.targets.tolist() == labels.tolist()
    assert loaded.ids[0] == "test:0" and loaded.input_shape == (1, 8, 8)


def test_fashionmnist_gzipped_idx(tmp_path: Path) -> None:
    images, labels = digit_images(5)
    raw = tmp_path / "FashionMNIST" / "raw"
    write_idx(raw / "train-images-idx3-ubyte", images * 15, gz=True)
    write_idx(raw / "train-labels-idx1-ubyte", labels.astype(np.uint8), gz=True)
    loaded = load_dataset(DataSpec(kind="fashionmnist", root=str(tmp_path)))
    x, y = _stack(loaded)
    torch.testing.assert_close(x[:, 0], torch.tensor(images * 15 / 255.0, dtype=torch.float32))
    assert y == labels.tolist()


def test_tensors_pt_dict_uint8_channels_last(tmp_path: Path) -> None:
    patches = astronaut_patches(5)
    path = tmp_path / "client.pt"
    torch.save({"images": torch.from_numpy(patches), "targets": torch.arange(5) % 2}, path)
    loaded = load_dataset(DataSpec(kind="tensors", root=str(path)))
    x, y = _stack(loaded)
    torch.testing.assert_close(x, _as_chw(patches), rtol=0, atol=0)
    assert y == [0, 1, 0, 1, 0] and loaded.num_classes == 2
    assert loaded.ids == [f"index:{i}" for i in range(5)]


def test_tensors_pt_tuple_float(tmp_path: Path) -> None:
    images, labels = digit_images(6)
    x_src = torch.tensor(images / 16.0, dtype=torch.float32).unsqueeze(1)
    path = tmp_path / "pair.pt"
    one_hot = F.one_hot(torch.from_numpy(labels), 10)  # labels may also come one-hot
    torch.save((x_src, one_hot), path)
    loaded = load_dataset(DataSpec(kind="tensors", root=str(path)))
    x, y = _stack(loaded)
    torch.testing.assert_close(x, x_src, rtol=0, atol=0)
    assert y == labels.tolist()


def test_tensors_npz(tmp_path: Path) -> None:
    patches = astronaut_patches(3)
    path = tmp_path / "client.npz"
    np.savez(path, x=patches, y=np.array([2, 0, 1]))
    loaded = load_dataset(DataSpec(kind="tensors", root=str(path)))
    x, y = _stack(loaded)
    torch.testing.assert_close(x, _as_chw(patches), rtol=0, atol=0)
    assert y == [2, 0, 1] and loaded.num_classes == 3


def test_digits_values_and_upsampling() -> None:
    digits = load_digits()
    loaded = load_dataset(DataSpec(kind="digits", first=4))
    x, y = _stack(loaded)
    expected = torch.tensor(digits.images[:4] / 16.0, dtype=torch.float32).unsqueeze(1)
    torch.testing.assert_close(x, expected, rtol=0, atol=0)
    assert y == digits.target[:4].tolist() and loaded.num_classes == 10
    big = load_dataset(DataSpec(kind="digits", first=4, resize=16))
    upsampled = F.interpolate(expected, size=16, mode="bilinear", align_corners=False)
    torch.testing.assert_close(_stack(big)[0], upsampled, atol=1e-6, rtol=0)


def test_normalisation_and_channel_repeat() -> None:
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 2.0]
    spec = DataSpec(kind="digits", first=3, channels=3, mean=mean, std=std)
    x, _ = _stack(load_dataset(spec))
    plain = torch.tensor(load_digits().images[:3] / 16.0, dtype=torch.float32)
    for c in range(3):
        torch.testing.assert_close(x[:, c], (plain - mean[c]) / std[c])


def test_subsets_indices_first_per_class() -> None:
    target = load_digits().target
    loaded = load_dataset(DataSpec(kind="digits", indices=[100, 5, 42, 7], first=3))
    assert loaded.ids == ["index:100", "index:5", "index:42"]
    assert loaded.labels.tolist() == target[[100, 5, 42]].tolist()
    capped = load_dataset(DataSpec(kind="digits", per_class=2))
    assert len(capped.ids) == 20
    expected = [i for i in range(len(target)) if (target[:i] == target[i]).sum() < 2]
    assert capped.ids == [f"index:{i}" for i in expected]
    assert capped.description["subset"] == {"indices": None, "first": None, "per_class": 2}


def test_out_of_range_indices() -> None:
    with pytest.raises(InputError, match=r"out of range for a dataset of 1797 samples.*1797, 5000"):
        load_dataset(DataSpec(kind="digits", indices=[0, 1797, 5000]))


def test_repeated_indices() -> None:
    with pytest.raises(InputError, match="repeat samples: 3"):
        load_dataset(DataSpec(kind="digits", indices=[3, 4, 3]))


def test_empty_dataset() -> None:
    loaded = load_dataset(DataSpec(kind="digits", indices=[]))
    with pytest.raises(InputError, match="the dataset is empty"):
        check_dataset(loaded)


def test_labels_out_of_range() -> None:
    loaded = load_dataset(DataSpec(kind="digits", first=20))
    with pytest.raises(InputError, match=r"label 5 of sample 'index:5' is out of range for 5"):
        check_dataset(loaded, num_classes=5)


def test_nan_and_inf_name_the_sample(tmp_path: Path) -> None:
    images, labels = digit_images(6)
    x = torch.tensor(images / 16.0, dtype=torch.float32).unsqueeze(1)
    x[4, 0, 2, 2] = float("nan")
    x[4, 0, 3, 3] = float("inf")
    path = tmp_path / "bad.pt"
    torch.save({"x": x, "y": torch.from_numpy(labels)}, path)
    loaded = load_dataset(DataSpec(kind="tensors", root=str(path)))
    with pytest.raises(
        InputError, match=r"sample 'index:4' contains non-finite values \(1 NaN, 1 Inf\)"
    ):
        check_dataset(loaded)
    check_dataset(loaded, scan_values=False)  # labels alone are fine


def test_inconsistent_shapes(folder: Path) -> None:
    Image.fromarray(astronaut_patches(1, size=24)[0]).save(folder / "class_2" / "small.png")
    loaded = load_dataset(DataSpec(kind="imagefolder", root=str(folder)))
    with pytest.raises(
        InputError, match=r"'class_2/small.png' has shape \[3, 24, 24\].*\[3, 32, 32\]"
    ):
        check_dataset(loaded)
    check_dataset(load_dataset(DataSpec(kind="imagefolder", root=str(folder), resize=32)))


def test_corrupt_image_named(folder: Path) -> None:
    (folder / "class_0" / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    loaded = load_dataset(DataSpec(kind="imagefolder", root=str(folder)))
    with pytest.raises(InputError, match=r"image 'class_0/zz_broken.png' cannot be read"):
        check_dataset(loaded)


def test_imagefolder_missing_root(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"does not exist; expected root/<class_name>/<image>"):
        load_dataset(DataSpec(kind="imagefolder", root=str(tmp_path / "nope")))


def test_imagefolder_without_class_dirs(tmp_path: Path) -> None:
    Image.fromarray(astronaut_patches(1)[0]).save(tmp_path / "loose.png")
    with pytest.raises(InputError, match="no class subdirectories"):
        load_dataset(DataSpec(kind="imagefolder", root=str(tmp_path)))


def test_cifar_missing_batches_names_layout(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cifar-10-batches-py/ with data_batch_1.*missing"):
        load_dataset(DataSpec(kind="cifar10", root=str(tmp_path)))


def test_mnist_missing_files_names_layout(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"MNIST/raw/ with t10k-images-idx3-ubyte"):
        load_dataset(DataSpec(kind="mnist", root=str(tmp_path), split="test"))


def test_truncated_idx(tmp_path: Path) -> None:
    images, labels = digit_images(4)
    write_mnist(tmp_path, images, labels)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_dataset(DataSpec(kind="mnist", root=str(tmp_path)))


class _Exploit:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (self.target,)


def test_cifar_batch_with_code_is_refused(tmp_path: Path) -> None:
    write_cifar(tmp_path, astronaut_patches(5), np.arange(5))
    marker = tmp_path / "pwned"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(pickle.dumps({"data": _Exploit(str(marker)), "labels": [0]}))
    with pytest.raises(InputError, match=r"refused to unpickle global (posix|os)\.mkdir"):
        load_dataset(DataSpec(kind="cifar10", root=str(tmp_path)))
    assert not marker.exists()


def test_tensor_file_with_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "objects.pt"
    torch.save({"x": torch.zeros(2, 1, 8, 8), "y": [0, 1], "meta": _Exploit("unused")}, path)
    with pytest.raises(InputError, match=r"the Python object (posix|os)\.mkdir.*weights_only"):
        load_dataset(DataSpec(kind="tensors", root=str(path)))


def test_npz_object_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object), y=np.array([0]))
    with pytest.raises(InputError, match=r"cannot read \.npz safely"):
        load_dataset(DataSpec(kind="tensors", root=str(path)))


def test_tensor_file_without_labels(tmp_path: Path) -> None:
    path = tmp_path / "x_only.pt"
    torch.save({"x": torch.zeros(2, 1, 8, 8)}, path)
    with pytest.raises(InputError, match=r"no labels found \(looked for keys y, labels, targets"):
        load_dataset(DataSpec(kind="tensors", root=str(path)))


def test_missing_tensor_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_dataset(DataSpec(kind="tensors", root=str(tmp_path / "none.pt")))


def test_unknown_kind_and_bad_normalisation() -> None:
    with pytest.raises(ConfigError, match="did you mean 'cifar10'"):
        load_dataset(DataSpec(kind="cifar-10", root="."))
    with pytest.raises(ConfigError, match="mean has 3 values but the images have 1 channels"):
        load_dataset(DataSpec(kind="digits", mean=[0.5, 0.5, 0.5]))


def test_cifar_batch_as_old_numpy_pickles_it(tmp_path: Path) -> None:
    # The real CIFAR files name numpy.core.multiarray._reconstruct (numpy < 2 pickles).
    patches = astronaut_patches(5)
    write_cifar(tmp_path, patches, np.arange(5))
    for path in (tmp_path / "cifar-10-batches-py").iterdir():
        old = path.read_bytes().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
        assert b"numpy.core.multiarray" in old
        path.write_bytes(old)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        loaded = load_dataset(DataSpec(kind="cifar10", root=str(tmp_path)))
    torch.testing.assert_close(_stack(loaded)[0], _as_chw(patches), rtol=0, atol=0)
