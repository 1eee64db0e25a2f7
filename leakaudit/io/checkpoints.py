"""Safe checkpoint loading: state_dicts, safetensors and TorchScript, detected by content.

Pickled checkpoints are read with ``torch.load(weights_only=True)``, which admits only
tensors and plain containers. A file that needs arbitrary Python objects is refused
unless the caller passes ``trust=True`` (the CLI's ``--trust-checkpoint``), because
unpickling such a file can run any code its author put in it.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import warnings
import zipfile
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
        trusted: Whether the file was unpickled with ``weights_only=False``.
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


def _needs_trust(path: Path, exc: Exception) -> InputError:
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    what = f"the Python object {found.group(1)}" if found else "arbitrary Python objects"
    return InputError(
        f"checkpoint {str(path)!r} contains {what}, which safe loading refuses; "
        "pass --trust-checkpoint only if you trust its source: unpickling it can run "
        "arbitrary code"
    )


def _torch_load(path: Path, trust: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
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
        trust: Unpickle with ``weights_only=False`` (arbitrary code execution risk).
        strict: Require the checkpoint's keys to equal the model's (shapes always must).

    Returns:
        ``(model, info)``.

    Raises:
        InputError: one line, for a missing/empty/corrupt file, an untrusted pickle, a
            state_dict without a model, or an architecture/state_dict mismatch.
    """
    path = Path(path)
    _check_file(path)
    kind = detect_format(path)
    nested: str | None = None
    stripped: str | None = None
    if kind == "torchscript":
        scripted = _load_torchscript(path)
        if model is None:
            loaded: nn.Module = scripted
        else:
            try:
                loaded, stripped = load_into(model, scripted.state_dict(), str(path), strict)
            except InputError as exc:
                raise InputError(
                    f"{exc} (for a TorchScript archive, leave the model unset to use the "
                    "scripted module as it is)"
                ) from exc
        fmt = "torchscript"
    else:
        found: Any
        if kind == "safetensors":
            found, fmt = _load_safetensors(path), "safetensors"
        else:
            found, nested = find_state_dict(_torch_load(path, trust), str(path))
            fmt = "pickled_module" if isinstance(found, nn.Module) else "state_dict"
        if isinstance(found, nn.Module):
            loaded = found
        elif model is None:
            raise InputError(
                f"checkpoint {str(path)!r} holds only weights (a state_dict); "
                "name the architecture they belong to (the model setting)"
            )
        else:
            loaded, stripped = load_into(model, found, str(path), strict)
    info = CheckpointInfo(
        path=str(path),
        sha256=sha256_file(path),
        format=fmt,
        trusted=trust and kind in ("zip", "pickle"),
        nested_key=nested,
        stripped_prefix=stripped,
    )
    return loaded, info
