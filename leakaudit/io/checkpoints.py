"""Safe checkpoint loading: state_dicts, safetensors and TorchScript, detected by content.

Pickled checkpoints are read with ``torch.load(weights_only=True)``, which admits only
tensors and plain containers. A file that needs arbitrary Python objects is refused
unless the caller passes ``trust=True`` (the CLI's ``--trust-checkpoint``), because
unpickling such a file can run any code its author put in it. A TorchScript archive is
code (its ``__setstate__`` runs on loading, its ``forward`` on scoring), so it is refused
without ``trust=True`` before anything in it is read.

Every zip entry's CRC-32 is checked before loading, and loaded weights must be finite.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leakaudit.errors import InputError
from leakaudit.io.state_dicts import find_state_dict, load_into

FORMATS = ("state_dict", "safetensors", "torchscript", "pickled_module")


@dataclass(frozen=True)
class CheckpointInfo:
    """What was loaded, for the report.

    Attributes:
        path: The checkpoint path as given.
        sha256: Hex SHA-256 of the file's bytes.
        format: ``"state_dict"``, ``"safetensors"``, ``"torchscript"``, or
            ``"pickled_module"`` (a whole ``nn.Module`` pickled; trusted loads only).
        trusted: Whether the file was loaded with trust: unpickled with
            ``weights_only=False``, or a TorchScript archive (which is code).
        nested_key: Where the weights sat inside the file (``"state_dict"``), or None.
        stripped_prefix: The key prefix removed to match the model (``"module."``), or None.
    """

    path: str
    sha256: str
    format: str
    trusted: bool
    nested_key: str | None
    stripped_prefix: str | None


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"checkpoint {str(path)!r} does not exist")
    if path.is_dir():
        raise InputError(f"checkpoint {str(path)!r} is a directory, not a file")
    if path.stat().st_size == 0:
        raise InputError(f"checkpoint {str(path)!r} is empty (0 bytes)")


def detect_format(path: Path) -> str:
    """``"safetensors"``, ``"torchscript"``, ``"zip"`` (torch.save) or ``"pickle"`` (legacy
    torch.save), from the file's bytes.

    Raises:
        InputError: for a truncated zip archive or content of no known format.
    """
    with open(path, "rb") as handle:
        head = handle.read(9)
    size = path.stat().st_size
    if len(head) == 9 and 2 <= int.from_bytes(head[:8], "little") <= size - 8 and head[8:] == b"{":
        return "safetensors"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile as exc:
            raise InputError(
                f"checkpoint {str(path)!r} is corrupt or truncated (broken zip archive: {exc})"
            ) from exc
        inner = {name.split("/", 1)[1] for name in names if "/" in name}
        if "constants.pkl" in inner or any(n.startswith("code/") for n in inner):
            return "torchscript"
        if "data.pkl" in inner:
            return "zip"
        raise InputError(f"checkpoint {str(path)!r} is a zip archive but not a PyTorch file")
    if head[:1] == b"\x80":
        return "pickle"
    raise InputError(
        f"checkpoint {str(path)!r} is not a PyTorch, safetensors or TorchScript file "
        "(unrecognised content)"
    )


def verify_zip(path: Path) -> None:
    """Read every entry of a zip checkpoint, checking its CRC-32 (``torch.load`` does not).

    Raises:
        InputError: naming the file and the first entry whose bytes do not match.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(f"checkpoint {str(path)!r} is corrupt ({exc})") from exc
    if bad is not None:
        raise InputError(
            f"checkpoint {str(path)!r} is corrupt: entry {bad!r} fails its CRC-32 check"
        )


def _torchscript_needs_trust(path: Path) -> InputError:
    return InputError(
        f"checkpoint {str(path)!r} is a TorchScript archive, which holds code that runs "
        "when it is loaded and scored; pass --trust-checkpoint only if you trust its "
        "source, or re-save its weights with torch.save(model.state_dict(), path)"
    )


def check_finite(model: nn.Module, source: str) -> None:
    """Refuse weights with NaN or Inf: they give NaN scores that no gate rule catches.

    Raises:
        InputError: naming the first parameter or buffer with non-finite values.
    """
    for name, tensor in model.state_dict().items():
        if not (tensor.is_floating_point() or tensor.is_complex()):
            continue
        finite = torch.isfinite(tensor)
        if not bool(finite.all()):
            nan = int(torch.isnan(tensor).sum())
            raise InputError(
                f"checkpoint {source!r}: tensor {name!r} holds non-finite values "
                f"({nan} NaN, {int((~finite).sum()) - nan} Inf)"
            )


def refused_global(exc: BaseException) -> str | None:
    """The global (``posix.system``) that ``torch.load(weights_only=True)`` refused, as
    named in its error message (whose wording differs between torch versions)."""
    found = re.search(r"unsupported global:?(?: GLOBAL)? ([\w.]+)", str(exc), re.IGNORECASE)
    return found.group(1) if found else None


def _needs_trust(path: Path, exc: Exception) -> InputError:
    found = refused_global(exc)
    what = f"the Python object {found}" if found else "arbitrary Python objects"
    return InputError(
        f"checkpoint {str(path)!r} contains {what}, which safe loading refuses; "
        "pass --trust-checkpoint only if you trust its source: unpickling it can run "
        "arbitrary code"
    )


def _torch_load(path: Path, trust: bool) -> Any:
    try:
        # A file object, not the path: torch.load picks safetensors by the file's name.
        with open(path, "rb") as handle:
            return torch.load(handle, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        if not trust and "Weights only load failed" in str(exc):
            raise _needs_trust(path, exc) from exc
        raise InputError(f"checkpoint {str(path)!r} is corrupt or truncated ({exc})") from exc
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"checkpoint {str(path)!r} is corrupt or truncated ({first})") from exc
    except (AttributeError, ModuleNotFoundError, ImportError) as exc:
        # Only reachable with trust: the pickle names a class this Python cannot import.
        raise InputError(
            f"checkpoint {str(path)!r} needs code that is not importable here: {exc}"
        ) from exc


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"checkpoint {str(path)!r} is a corrupt safetensors file ({exc})") from exc


def _load_torchscript(path: Path) -> torch.jit.ScriptModule:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"TorchScript archive {str(path)!r} cannot be loaded ({first})") from exc
    return module


@dataclass(frozen=True)
class RawCheckpoint:
    """A checkpoint as read from disk, before it meets a model.

    Attributes:
        path: The file.
        kind: What :func:`detect_format` found.
        content: A ``{name: Tensor}`` mapping, a whole ``nn.Module`` (trusted pickle) or a
            ``torch.jit.ScriptModule`` (trusted TorchScript).
        nested_key: Where the weights sat inside the file, or None.
        trusted: Whether loading used trust (unrestricted unpickling or TorchScript code).
    """

    path: Path
    kind: str
    content: Any
    nested_key: str | None
    trusted: bool

    def state_dict(self) -> Mapping[str, torch.Tensor] | None:
        """The weights as a state_dict; None for a pickled whole module."""
        if isinstance(self.content, torch.jit.ScriptModule):
            return dict(self.content.state_dict())
        if isinstance(self.content, nn.Module):
            return None
        return dict(self.content)


def read_checkpoint(path: str | Path, *, trust: bool = False) -> RawCheckpoint:
    """Read a checkpoint without a model: detect its format, check it, load it safely.

    Zip archives have every entry's CRC-32 checked first; a TorchScript archive is refused
    without ``trust`` before anything in it is loaded.

    Raises:
        InputError: one line, for a missing/empty/corrupt file, an untrusted pickle or an
            untrusted TorchScript archive.
    """
    path = Path(path)
    _check_file(path)
    kind = detect_format(path)
    if kind in ("zip", "torchscript"):
        verify_zip(path)
    nested: str | None = None
    content: Any
    if kind == "torchscript":
        if not trust:
            raise _torchscript_needs_trust(path)
        content = _load_torchscript(path)
    elif kind == "safetensors":
        content = _load_safetensors(path)
    else:
        content, nested = find_state_dict(_torch_load(path, trust), str(path))
    return RawCheckpoint(path, kind, content, nested, trust and kind != "safetensors")


def apply_checkpoint(
    raw: RawCheckpoint, model: nn.Module | None, *, strict: bool = True
) -> tuple[nn.Module, CheckpointInfo]:
    """Load ``raw``'s weights into ``model`` (or use the module it holds), check that every
    weight is finite, and describe what was loaded (see :func:`load_checkpoint`)."""
    source, content = str(raw.path), raw.content
    stripped: str | None = None
    loaded: nn.Module
    if isinstance(content, torch.jit.ScriptModule) and model is not None:
        try:
            loaded, stripped = load_into(model, content.state_dict(), source, strict)
        except InputError as exc:
            raise InputError(
                f"{exc} (for a TorchScript archive, leave the model unset to use the "
                "scripted module as it is)"
            ) from exc
    elif isinstance(content, nn.Module):
        loaded = content
    elif model is None:
        raise InputError(
            f"checkpoint {source!r} holds only weights (a state_dict); "
            "name the architecture they belong to (the model setting)"
        )
    else:
        loaded, stripped = load_into(model, content, source, strict)
    check_finite(loaded, source)
    if raw.kind in ("torchscript", "safetensors"):
        fmt = raw.kind
    else:
        fmt = "pickled_module" if isinstance(content, nn.Module) else "state_dict"
    info = CheckpointInfo(
        path=source,
        sha256=sha256_file(raw.path),
        format=fmt,
        trusted=raw.trusted,
        nested_key=raw.nested_key,
        stripped_prefix=stripped,
    )
    return loaded, info


def load_checkpoint(
    path: str | Path, model: nn.Module | None, *, trust: bool = False, strict: bool = True
) -> tuple[nn.Module, CheckpointInfo]:
    """Load weights from ``path`` into ``model`` (or load a whole model from the file).

    Args:
        path: A state_dict (``torch.save``, also nested and prefixed), a safetensors file
            or a TorchScript archive; the format is detected from the content.
        model: The architecture to load into. May be None for TorchScript archives and
            trusted pickles of a whole module. For a TorchScript archive with a model
            given, the archive's weights are loaded into ``model`` (an ordinary module
            that works with ``torch.func``); without one the scripted module is returned.
        trust: Unpickle with ``weights_only=False`` and allow TorchScript archives
            (arbitrary code execution risk).
        strict: Require the checkpoint's keys to equal the model's (shapes always must).

    Returns:
        ``(model, info)``.

    Raises:
        InputError: one line, for a missing/empty/corrupt file (a failed CRC), an untrusted
            pickle or TorchScript archive, a state_dict without a model, an
            architecture/state_dict mismatch, or NaN/Inf weights.
    """
    return apply_checkpoint(read_checkpoint(path, trust=trust), model, strict=strict)
