"""ImageFolder: ``root/<class>/**/<image>``, listed without following directory links and
read one image at a time, each refused from its header when it has too many pixels."""

from __future__ import annotations

import os
import stat
import warnings
from contextvars import ContextVar
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from leakaudit.errors import InputError
from leakaudit.io.sources import Source
from leakaudit.models.choices import shorten

#: Image file extensions ImageFolder reads (as torchvision's ImageFolder).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: Largest image (width × height) decoded by default: 4096², 48 MiB as 8-bit RGB.
DEFAULT_MAX_PIXELS = 4096 * 4096
LAYOUT = "root/<class_name>/<image>.png (one subdirectory per class)"


class SkippedPathWarning(UserWarning):
    """Entries of an ImageFolder that were not read (directory links, duplicates, …)."""


#: Whether :class:`SkippedPathWarning` leaves out the entries' names (``scan --redact``:
#: file and folder names can be personal data, and warnings end up in CI logs).
_HIDE_SKIPPED_PATHS: ContextVar[bool] = ContextVar("hide_skipped_paths", default=False)


def hide_skipped_paths(hide: bool) -> None:
    """Name skipped entries in warnings (``False``), or give only counts and reasons."""
    _HIDE_SKIPPED_PATHS.set(hide)


def _is_dir_link(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_symlink() and entry.is_dir()
    except OSError:  # a link loop
        return False


def _scandir(directory: str, display: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return sorted(entries, key=lambda e: e.name)
    except OSError as exc:
        raise InputError(f"ImageFolder directory {display!r} cannot be listed ({exc})") from exc


def _class_files(
    root: Path, name: str, seen: set[tuple[int, int]], skipped: dict[str, list[str]]
) -> list[Path]:
    """Image files under ``root/name``, in torchvision's order (directories sorted by
    path, files by name). Directory links are not followed; a file reached twice (links,
    hard links) is kept once; only regular files are kept."""
    directories, stack = [], [root / name]
    while stack:  # real directories only: no loops, since directory links are not entered
        directory = stack.pop()
        directories.append(directory)
        for entry in _scandir(str(directory), directory.relative_to(root).as_posix()):
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
    files = []
    for directory in sorted(directories, key=str):
        for entry in _scandir(str(directory), directory.relative_to(root).as_posix()):
            relative = Path(entry.path).relative_to(root).as_posix()
            if entry.is_dir(follow_symlinks=False):
                continue
            if _is_dir_link(entry):
                skipped["directory links are not followed"].append(relative)
                continue
            if not entry.name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            try:
                info = os.stat(entry.path)  # follows a file link, wherever it points
            except OSError:
                skipped["broken or looping links"].append(relative)
                continue
            if not stat.S_ISREG(info.st_mode):
                skipped["not regular files"].append(relative)
            elif (info.st_dev, info.st_ino) in seen:
                skipped["files already listed (links to the same file)"].append(relative)
            else:
                seen.add((info.st_dev, info.st_ino))
                files.append(Path(entry.path))
    return files


def list_images(root: Path) -> tuple[list[str], list[Path], list[int]]:
    """Classes (sorted subdirectory names), image files and their labels under ``root``.

    Warns (:class:`SkippedPathWarning`) with the entries it did not read.
    """
    if not root.is_dir():
        where = "is a file" if root.exists() else "does not exist"
        raise InputError(f"ImageFolder root {str(root)!r} {where}; expected {LAYOUT}")
    entries = [e for e in _scandir(str(root), str(root)) if not e.name.startswith(".")]
    skipped: dict[str, list[str]] = {
        "directory links are not followed": [e.name for e in entries if _is_dir_link(e)],
        "broken or looping links": [],
        "not regular files": [],
        "files already listed (links to the same file)": [],
    }
    classes = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    if not classes:
        raise InputError(
            f"ImageFolder root {str(root)!r} has no class subdirectories; expected {LAYOUT}"
        )
    seen: set[tuple[int, int]] = set()
    files: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        found = _class_files(root, name, seen, skipped)
        files += found
        labels += [index] * len(found)
    hide = _HIDE_SKIPPED_PATHS.get()
    for reason, paths in skipped.items():
        if paths:
            where = "ImageFolder" if hide else f"ImageFolder {str(root)!r}"
            names = "" if hide else f": {shorten(paths)}"
            warnings.warn(
                f"{where}: skipped {len(paths)} entries ({reason}){names}",
                SkippedPathWarning,
                stacklevel=3,
            )
    return classes, files, labels


def read_image(path: Path, channels: int | None, display: str, max_pixels: int) -> Tensor:
    """Image at ``path`` as ``[C, H, W]`` float32 in [0, 1]: RGB, or grey if ``channels`` is 1.

    The size is read from the header and checked before any pixel is decoded.

    Raises:
        InputError: unreadable, or more than ``max_pixels`` pixels (or past Pillow's own
            decompression-bomb limit); the message names ``display``.
    """
    from PIL import Image, UnidentifiedImageError

    limit = f"data.max_pixels ({max_pixels})"
    try:
        with warnings.catch_warnings():
            # Pillow warns past its own limit; max_pixels decides instead (its hard
            # limit, twice that, still raises DecompressionBombError).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise InputError(
                        f"image {display!r} is {width}x{height} ({width * height} pixels), "
                        f"larger than {limit}: resize it, or raise max_pixels"
                    )
                array = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    except Image.DecompressionBombError as exc:
        raise InputError(f"image {display!r} is refused: {exc} (limit: {limit})") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"image {display!r} cannot be read ({exc})") from exc
    tensor = torch.from_numpy(array.copy())
    tensor = tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)
    return tensor.float() / 255.0


def imagefolder_source(
    root: Path, channels: int | None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Source:
    """``root/<class>/**/<image>``; classes are the sorted subdirectory names.

    Images are read on access, as RGB, or as 8-bit grey when ``channels`` is 1.
    """
    classes, files, labels = list_images(root)
    if not files:
        raise InputError(
            f"ImageFolder root {str(root)!r} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
            f"expected {LAYOUT}"
        )
    ids = [f.relative_to(root).as_posix() for f in files]

    def read(i: int) -> Tensor:
        return read_image(files[i], channels, ids[i], max_pixels)

    return Source(read, torch.tensor(labels, dtype=torch.int64), ids, len(classes), classes)
