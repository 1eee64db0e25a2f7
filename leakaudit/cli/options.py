"""Flags that ``scan`` and ``validate`` share, and how flags become config overrides.

The model and data flags are defined once here as ``Annotated`` types. A command reads
them back from ``ctx.params`` through a table of parameter name → dotted config key
(:data:`INPUT_KEYS`, :data:`SCAN_KEYS`) and :func:`flag_overrides`, so a flag and the
key it sets are written down in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import is_dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from leakaudit.attacks.base import BUDGETS
from leakaudit.cli.console import warning_line
from leakaudit.config import ScanConfig


class Device(str, Enum):
    """Where to compute."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Budget(str, Enum):
    """An attack budget; the members are :data:`leakaudit.attacks.base.BUDGETS`' names."""

    fast = "fast"
    standard = "standard"
    paper = "paper"


Model = Annotated[
    str | None,
    typer.Option(
        help="Architecture: lenet, convnet, resnet18, resnet20, torchvision:NAME, "
        "file.py:function, package.module:function, torchscript."
    ),
]
NumClasses = Annotated[int | None, typer.Option(help="Model outputs (default: the data's).")]
Checkpoint = Annotated[
    str | None, typer.Option(help="Weights: .pt/.pth, .safetensors, TorchScript.")
]
TrustCheckpoint = Annotated[
    bool,
    typer.Option(help="Allow unpickling arbitrary objects and TorchScript code (unsafe)."),
]
RandomInit = Annotated[
    bool,
    typer.Option(help="No checkpoint: score a randomly initialised model, seeded by --seed."),
]
Data = Annotated[str | None, typer.Option(help="Data root: folder or tensor file.")]
DataKind = Annotated[
    str | None,
    typer.Option(help="imagefolder, cifar10, cifar100, mnist, fashionmnist, tensors, digits."),
]
Split = Annotated[str | None, typer.Option(help="Dataset split (e.g. train, test).")]
First = Annotated[int | None, typer.Option(help="Scan only the first N samples.")]
PerClass = Annotated[int | None, typer.Option(help="At most N samples per class.")]
Debug = Annotated[bool, typer.Option(help="Show tracebacks.")]
ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config (`leakaudit init` writes one)."),
]
ShowProgress = Annotated[bool, typer.Option(help="Show progress bars.")]


def _csv(text: str | None) -> list[str] | None:
    return text.split(",") if text else None


def _select(text: str | None) -> str | list[str] | None:
    """``--scores``: ``auto``, ``all``, or comma-separated score names."""
    names = _csv(text)
    if names is not None and len(names) == 1 and names[0] in ("auto", "all"):
        return names[0]
    return names


def _only_on(flag: bool | None) -> bool | None:
    """A ``--flag`` that can only switch a setting on: off means "not given"."""
    return True if flag else None


#: A command parameter → (the dotted config key it sets, a conversion of its value).
Keys = Mapping[str, tuple[str, Callable[[Any], Any] | None]]

#: The model and data flags (the types above), taken by ``scan`` and ``validate``.
INPUT_KEYS: Keys = {
    "model": ("model.name", None),
    "num_classes": ("model.num_classes", None),
    "checkpoint": ("model.checkpoint", None),
    "trust_checkpoint": ("model.trust_checkpoint", _only_on),
    "random_init": ("model.random_init", _only_on),
    "data": ("data.root", None),
    "data_kind": ("data.kind", None),
    "split": ("data.split", None),
    "first": ("data.first", None),
    "per_class": ("data.per_class", None),
}

#: The scoring and output flags of ``scan``.
SCAN_KEYS: Keys = {
    "scores": ("scores.select", _select),
    "risk_score": ("scores.risk_score", None),
    "calibration": ("scores.calibration", None),
    "device": ("scores.device", None),
    "dtype": ("scores.dtype", None),
    "max_iter": ("scores.max_iter", None),
    "n_probes": ("scores.n_probes", None),
    "chunk_size": ("scores.chunk_size", None),
    "batch_size": ("scores.batch_size", None),
    "local_steps": ("scores.local_steps", None),
    "local_lr": ("scores.local_lr", None),
    "seed": ("scores.seed", None),
    "target_error": ("defense.target_error", None),
    "top_k": ("output.top_k", None),
    "json_path": ("output.json", None),
    "fmt": ("output.format", None),
    "output": ("output.output", None),
}


def flag_overrides(params: Mapping[str, Any], keys: Keys) -> dict[str, Any]:
    """Dotted config key → flag value, for :func:`leakaudit.config.with_overrides`.

    Args:
        params: the command's parsed parameters (``ctx.params``); every name in ``keys``
            must be one of them.
        keys: which parameters set which config keys (:data:`INPUT_KEYS`, ...).

    Returns:
        One entry per key; ``None`` (a flag that was not given) leaves the config as is.
        Enum choices become their values.
    """
    out: dict[str, Any] = {}
    for name, (key, convert) in keys.items():
        value = params[name]
        if isinstance(value, Enum):
            value = value.value
        if convert is not None:
            value = convert(value)
        out[key] = value
    return out


def config_default(key: str) -> str | None:
    """How ``--help`` shows a dotted config key's default without a config file: ``None``
    for a key with no default (``None``, off, a section); a list's items joined by ", "."""
    value: Any = ScanConfig()
    for part in key.split("."):
        value = getattr(value, part)
    if value is None or value is False or is_dataclass(value):
        return None
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


#: The line ``--help`` ends with when it shows the configuration's defaults.
DEFAULTS_NOTE = (
    "A flag not given keeps the value of the configuration the command starts from "
    "(--config, --demo, validate's --report); the defaults shown apply without one."
)


def show_config_defaults(params: Iterable[Any], keys: Keys) -> None:
    """Append ``[default: VALUE]`` to the help of each option whose config key has a
    default (the option itself defaults to ``None``: "not given, keep the config's")."""
    for param in params:
        if param.name in keys and param.default is None and param.help:
            shown = config_default(keys[param.name][0])
            if shown is not None:
                param.help = f"{param.help}  [default: {shown}]"


def warn_if_trusted(cfg: ScanConfig) -> None:
    """Warn on stderr when the checkpoint will be unpickled without restrictions."""
    if cfg.model.trust_checkpoint:
        warning_line("--trust-checkpoint: the checkpoint may run arbitrary code when loaded")


# --- the attack flags of `validate` and `calibrate` ----------------------------------------

DefenseFlag = Annotated[
    str | None, typer.Option(help="Defence the attacker faces, e.g. gaussian:sigma=0.01.")
]
Attacks = Annotated[str, typer.Option(help="Comma-separated: dlg, idlg, ig.")]
BudgetFlag = Annotated[
    Budget, typer.Option(help=f"Attack iterations preset: {BUDGETS.help_text(str)}.")
]
Seed = Annotated[
    int, typer.Option(min=0, max=2**63 - 1, help="Seeds selection, noise, attacks, bootstrap.")
]
AttackDevice = Annotated[Device, typer.Option(help="Where to attack.")]
