"""Hostile datasets: symlink loops, decompression bombs, corrupt torchvision files,
over-budget and pickle-carrying tensor files. Each is refused with exit 2 and one
``error:`` line naming the file, quickly, or (symlinks) read with each image once."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import signal
import struct
import time
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from leakaudit.cli import app
from leakaudit.errors import InputError
from leakaudit.io.datasets import DataSpec, load_dataset
from tests.helpers_cli import assert_refused
from tests.helpers_io import astronaut_patches, digit_images, write_cifar, write_mnist

# The data is what these tests are about: a seeded random model is enough.
FAST = ["--max-iter", "2", "--n-probes", "1", "--no-progress", "--random-init"]


def scan(*args: str):
    return CliRunner().invoke(app, ["scan", *args, *FAST])


def write_config(tmp_path: Path, data: dict, scores: dict | None = None) -> str:
    path = tmp_path / "c.json.yaml"
    body = {"model": {"name": "lenet", "random_init": True}, "data": data, "scores": scores or {}}
    path.write_text(json.dumps(body))  # JSON is YAML
    return str(path)


# --- 1. ImageFolder symlinks ----------------------------------------------------------------


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise TimeoutError in the main thread after ``seconds`` (a hang fails, not blocks)."""

    def expire(signum, frame):
        raise TimeoutError(f"did not finish in {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def four_image_folder(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for i, patch in enumerate(astronaut_patches(4)):
        (root / f"c{i // 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(patch).save(root / f"c{i // 2}" / f"img{i}.png")
    return root


def test_imagefolder_symlink_loops_each_image_once(tmp_path: Path) -> None:
    root = four_image_folder(tmp_path)
    os.symlink("..", root / "c0" / "up")  # back to the root: every class again, as c0
    os.symlink(".", root / "c1" / "self_a")  # two self-links: 2^40 paths when followed
    os.symlink(".", root / "c1" / "self_b")
    os.symlink("loop_b", root / "loop_a")  # mutual links: a loop that resolves nowhere
    os.symlink("loop_a", root / "loop_b")
    os.symlink("c0", root / "c2")  # a class that is a link: not a class of its own
    os.symlink("../c0/img0.png", root / "c1" / "zz_dup.png")  # the same file twice

    start = time.perf_counter()
    with time_limit(20), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_dataset(DataSpec(kind="imagefolder", root=str(root)))
    assert time.perf_counter() - start < 10
    assert loaded.description["classes"] == ["c0", "c1"]
    assert loaded.ids == ["c0/img0.png", "c0/img1.png", "c1/img2.png", "c1/img3.png"]
    assert loaded.labels.tolist() == [0, 0, 1, 1]
    said = " ".join(str(w.message) for w in caught)
    for name in ("c0/up", "c1/self_a", "c1/self_b", "c2", "c1/zz_dup.png"):  # skips are named
        assert name in said, said


def test_imagefolder_file_link_outside_root_is_read(tmp_path: Path) -> None:
    """File links are followed wherever they point (git-annex, DVC), when regular files."""
    root = four_image_folder(tmp_path)
    Image.fromarray(astronaut_patches(5)[4]).save(tmp_path / "pool.png")
    os.symlink(str(tmp_path / "pool.png"), root / "c1" / "linked.png")
    os.mkfifo(root / "c1" / "fifo.png")  # opening it would block forever
    with pytest.warns(UserWarning, match="fifo.png"):
        loaded = load_dataset(DataSpec(kind="imagefolder", root=str(root)))
    assert loaded.ids == ["c0/img0.png", "c0/img1.png", "c1/img2.png", "c1/img3.png",
                          "c1/linked.png"]  # fmt: skip
    assert loaded.labels.tolist() == [0, 0, 1, 1, 1]
    assert torch.equal(loaded.dataset[4][0], loaded.dataset[4][0])


# --- 2. Decompression bombs -----------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png_header(path: Path, width: int, height: int) -> None:
    """A PNG declaring ``width × height`` RGB whose data holds only the first rows: tiny on
    disk; decoding it would allocate the declared size (then fail as truncated)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + 3 * width) * 4)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")
    )


def bomb_folder(tmp_path: Path, side: int) -> Path:
    root = tmp_path / "bomb"
    images, labels = digit_images(2)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        (root / f"c{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image * 16).save(root / f"c{label}" / f"a{i}.png")
    write_png_header(root / "c1" / "z_bomb.png", side, side)
    return root


@pytest.mark.parametrize("side", [20000, 6000])  # past Pillow's own limit; under it
def test_image_bomb_refused_from_header(tmp_path: Path, side: int) -> None:
    root = bomb_folder(tmp_path, side)
    start = time.perf_counter()
    line = assert_refused(
        scan("--data", str(root), "--data-kind", "imagefolder"),
        "c1/z_bomb.png", f"{side * side} pixels",
    )  # fmt: skip
    assert "max_pixels" in line
    assert time.perf_counter() - start < 20


def test_max_pixels_is_configurable(tmp_path: Path) -> None:
    root = bomb_folder(tmp_path, 100)
    (root / "c1" / "z_bomb.png").unlink()
    Image.fromarray(astronaut_patches(1, size=40)[0]).save(root / "c1" / "z_big.png")
    cfg = write_config(tmp_path, {"kind": "imagefolder", "root": str(root), "max_pixels": 1000,
                                  "channels": 1, "resize": 8})  # fmt: skip
    assert_refused(scan("--config", cfg), "c1/z_big.png", "40x40", "max_pixels")


def test_pillow_bomb_warning_as_error_is_an_input_error(tmp_path: Path) -> None:
    root = bomb_folder(tmp_path, 10000)  # 100 MPix: Pillow warns, and here warnings raise
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match=r"z_bomb\.png"):
            load_dataset(DataSpec(kind="imagefolder", root=str(root))).dataset[2]


# --- 3. Corrupt MNIST / CIFAR -----------------------------------------------------------------


def mnist_root(tmp_path: Path, gz: bool = False) -> Path:
    images, labels = digit_images(8)
    root = tmp_path / "mnist"
    write_mnist(root, images * 16, labels)
    if gz:
        raw = root / "MNIST" / "raw"
        for path in raw.iterdir():
            path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
            path.unlink()
    return root


def _corrupt_gz(data: bytes) -> bytes:
    # Keep the gzip header, damage the deflate stream.
    return data[:10] + bytes([b ^ 0xFF for b in data[10:30]]) + data[30:]


@pytest.mark.parametrize(
    "name, damage, gz",
    [
        ("truncated", lambda b: b[: len(b) // 2], False),
        ("magic", lambda b: b"\x00\x00\x09" + b[3:], False),
        ("count", lambda b: b[:4] + (2**31).to_bytes(4, "big") + (2**31).to_bytes(4, "big")
         + (4).to_bytes(4, "big") + b[16:], False),
        ("empty", lambda b: b"", False),
        ("gz-truncated", lambda b: b[: len(b) // 2], True),
        ("gz-deflate", _corrupt_gz, True),
    ],
)  # fmt: skip
def test_corrupt_mnist_idx(tmp_path: Path, name: str, damage, gz: bool) -> None:
    root = mnist_root(tmp_path, gz)
    path = root / "MNIST" / "raw" / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(damage(path.read_bytes()))
    assert_refused(scan("--data", str(root), "--data-kind", "mnist"), path.name)


def cifar_root(tmp_path: Path) -> Path:
    root = tmp_path / "cifar"
    write_cifar(root, astronaut_patches(5), np.arange(5) % 2)
    return root


def _pickled(obj) -> bytes:
    return pickle.dumps(obj, protocol=2)


class _Allocate:
    """Pickles as ``call(*args)`` (then ``__setstate__(state)``): whatever the file asks."""

    def __init__(self, call, *args, state=None) -> None:
        self.call, self.args, self.state = call, args, state

    def __reduce__(self):
        return (self.call, self.args) if self.state is None else (self.call, self.args, self.state)


_ROWS = astronaut_patches(2).transpose(0, 3, 1, 2).reshape(2, -1)


@pytest.mark.parametrize(
    "name, damage",
    [
        ("truncated", lambda b: b[: len(b) // 2]),
        ("not-a-dict", lambda b: _pickled([1, 2, 3])),
        ("garbage", lambda b: b"\x80\x02" + bytes(range(256)) * 4),
        ("data-dict", lambda b: _pickled({"data": {"a": 1}, "labels": [0]})),
        ("wrong-width", lambda b: _pickled({"data": _ROWS.reshape(6, 1024), "labels": [0, 1]})),
        ("huge-label", lambda b: _pickled({"data": _ROWS, "labels": [0, 10**30]})),
        ("labels-count", lambda b: _pickled({"data": _ROWS, "labels": [0]})),
        ("no-data", lambda b: _pickled({"labels": [0]})),
        ("ndarray-call", lambda b: _pickled({"data": _Allocate(np.ndarray, (10**11,)),
                                             "labels": [0]})),
        ("object-array", lambda b: _pickled(
            {"data": _Allocate(np.ndarray.__reduce__(_ROWS)[0], np.ndarray, (0,), b"b",
                               state=(1, (10**5,), np.dtype("O"), False, [1, 2])),
             "labels": [0]})),  # numpy itself crashes on this state
        ("reconstruct-shape", lambda b: _pickled(
            {"data": _Allocate(np.ndarray.__reduce__(_ROWS)[0], np.ndarray, (10**11,), b"b"),
             "labels": [0]})),
    ],
)  # fmt: skip
def test_corrupt_cifar_batch(tmp_path: Path, name: str, damage) -> None:
    root = cifar_root(tmp_path)
    path = root / "cifar-10-batches-py" / "data_batch_1"
    path.write_bytes(damage(path.read_bytes()))
    assert_refused(scan("--data", str(root), "--data-kind", "cifar10"), "data_batch_1")


# --- 4. Data held in memory vs memory_budget ----------------------------------------------------


def digits_npz(tmp_path: Path, n: int = 64) -> Path:
    images, labels = digit_images(n)
    path = tmp_path / "d.npz"
    np.savez(path, x=(images[:, None] / 16.0).astype(np.float32), y=labels)
    return path


def test_tensor_file_over_memory_budget(tmp_path: Path) -> None:
    npz = digits_npz(tmp_path)  # 64 × 64 float32 = 16 KiB of inputs
    images, labels = digit_images(64)
    pt = tmp_path / "d.pt"
    torch.save({"x": torch.tensor(images[:, None] / 16.0, dtype=torch.float32),
                "y": torch.tensor(labels)}, pt)  # fmt: skip
    for path in (npz, pt):
        cfg = write_config(tmp_path, {"kind": "tensors", "root": str(path), "first": 4},
                           {"memory_budget": 4000})  # fmt: skip
        assert_refused(scan("--config", cfg), path.name, "memory_budget")


def test_npz_declared_size_is_checked_before_allocation(tmp_path: Path) -> None:
    # The header declares 10^6 ImageNet-sized float32 images (600 GB); the data is 64 bytes.
    path = tmp_path / "huge.npz"
    np.savez(path, x=np.zeros((1, 1, 4, 4), np.float32), y=np.zeros(1, np.int64))
    import zipfile

    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1, 4, 4), np.float32))
    header["shape"] = (10**6, 3, 224, 224)
    from io import BytesIO

    buffer = BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    members["x.npy"] = buffer.getvalue() + bytes(64)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    start = time.perf_counter()
    assert_refused(scan("--data", str(path), "--data-kind", "tensors"), "huge.npz", "memory_budget")
    assert time.perf_counter() - start < 20


def test_mnist_over_memory_budget_before_reading(tmp_path: Path) -> None:
    root = mnist_root(tmp_path, gz=True)
    # A gzip bomb: a header declaring 20000 28×28 images, then 16 MB of zeros (16 KB packed).
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (20000, 28, 28))
    path.write_bytes(gzip.compress(header + bytes(20000 * 28 * 28)))
    cfg = write_config(tmp_path, {"kind": "mnist", "root": str(root)},
                       {"memory_budget": "1MB"})  # fmt: skip
    assert_refused(scan("--config", cfg), path.name, "memory_budget")


def test_cifar_over_memory_budget(tmp_path: Path) -> None:
    root = cifar_root(tmp_path)
    cfg = write_config(tmp_path, {"kind": "cifar10", "root": str(root)},
                       {"memory_budget": "4KB"})  # fmt: skip
    assert_refused(scan("--config", cfg), "cifar", "memory_budget")


def test_imagefolder_is_read_per_image(tmp_path: Path) -> None:
    """ImageFolders are streamed: loading decodes only the first image, however many."""
    root = tmp_path / "data"
    for i, patch in enumerate(astronaut_patches(6)):
        (root / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(patch).save(root / f"c{i % 2}" / f"img{i}.png")
    (root / "c1" / "img5.png").write_bytes(b"not an image")
    loaded = load_dataset(DataSpec(kind="imagefolder", root=str(root)))
    assert len(loaded.ids) == 6  # loaded without touching the bad file
    with pytest.raises(InputError, match=r"img5\.png"):
        loaded.dataset[5]


# --- Pickles inside tensor files ----------------------------------------------------------------


class _Hostile:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_in_pt_and_npz_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    images, labels = digit_images(4)
    pt = tmp_path / "evil.pt"
    torch.save({"x": torch.tensor(images[:, None] / 16.0), "y": torch.tensor(labels),
                "extra": _Hostile(marker)}, pt)  # fmt: skip
    npz = tmp_path / "evil.npz"
    x = np.empty(1, dtype=object)
    x[0] = _Hostile(marker)
    np.savez(npz, x=x, y=labels[:1])
    for path, needle in ((pt, "io.open"), (npz, "allow_pickle=False")):
        assert_refused(scan("--data", str(path), "--data-kind", "tensors"), path.name, needle)
        assert not marker.exists()
