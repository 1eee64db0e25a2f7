"""Guards on what a run writes: no output may replace one of the run's own inputs.

Checked before any work starts, so that a refusal costs nothing and destroys nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from leakaudit.errors import ConfigError

if TYPE_CHECKING:
    from leakaudit.config import ScanConfig

PathLike = str | Path | None

# --- outputs over inputs --------------------------------------------------------------


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a link loop: compare the path as written
        return path.absolute()


def _same(output: Path, target: Path) -> bool:
    """Whether writing ``output`` would replace ``target`` (same path after resolving
    links, or the same file through a hard link)."""
    if _resolve(output) == _resolve(target):
        return True
    try:
        return os.path.samefile(output, target)
    except OSError:  # one of them does not exist (yet)
        return False


def _inside(output: Path, folder: Path) -> bool:
    return _resolve(output).is_relative_to(_resolve(folder))


def refuse_outputs_over_inputs(
    outputs: Mapping[str, PathLike],
    inputs: Mapping[str, PathLike],
    folders: Mapping[str, PathLike] | None = None,
) -> None:
    """Refuse any output that is one of the run's inputs, or lies inside an input folder.

    Args:
        outputs: flag (``"--json"``) → the path it writes; ``None`` and ``"-"`` (stdout)
            are skipped.
        inputs: what the file is (``"the checkpoint"``) → its path; ``None`` is skipped.
        folders: what the folder is → its path; an output anywhere under it is refused
            (an ImageFolder would read it as a sample, or it would replace one).

    Raises:
        ConfigError: ``--json r.pt is an input of this run (the checkpoint); choose
            another path``.
    """
    for flag, out in outputs.items():
        if out is None or str(out) == "-":
            continue
        output = Path(out).expanduser()
        for what, path in inputs.items():
            if path is not None and _same(output, Path(path).expanduser()):
                raise ConfigError(
                    f"{flag} {out} is an input of this run ({what}); choose another path"
                )
        for what, path in (folders or {}).items():
            if path is not None and _inside(output, Path(path).expanduser()):
                raise ConfigError(
                    f"{flag} {out} is inside {what} {path}, which this run reads; "
                    "choose another path"
                )


def _factory_file(name: str) -> str | None:
    """The ``.py`` file of a ``file.py:function`` model, if ``name`` is one."""
    target, sep, _ = name.rpartition(":")
    return target if sep and target.endswith(".py") else None


def _data_inputs(cfg: ScanConfig) -> tuple[dict[str, PathLike], dict[str, PathLike]]:
    """The data files and folders ``cfg`` reads: the tensor file, the MNIST/CIFAR files
    present under the root, or the ImageFolder root."""
    from leakaudit.io.torchvision_formats import format_files

    kind, root = cfg.data.kind, cfg.data.root
    if root is None or kind == "digits":
        return {}, {}
    if kind == "imagefolder":
        return {}, {"the ImageFolder data root": root}
    if kind == "tensors":
        return {"the data": root}, {}
    files = format_files(kind, Path(root).expanduser())
    return {f"the data ({path.name})": path for path in files}, {}


def check_run_outputs(
    cfg: ScanConfig,
    outputs: Mapping[str, PathLike],
    config: PathLike = None,
    report: PathLike = None,
) -> None:
    """:func:`refuse_outputs_over_inputs` for a scan or validation of ``cfg``: its
    checkpoint, data, model factory file, config file and scan report are inputs."""
    files, folders = _data_inputs(cfg)
    inputs: dict[str, PathLike] = {
        "the checkpoint": cfg.model.checkpoint,
        "the calibration": cfg.scores.calibration,
        "the baseline report": cfg.gate.baseline,
        "the model factory": _factory_file(cfg.model.name),
        "the config": config,
        "the scan report": report,
        **files,
    }
    refuse_outputs_over_inputs(outputs, inputs, folders)


def check_scan_outputs(cfg: ScanConfig, *, config: PathLike, partial: PathLike) -> None:
    """Refuse a scan whose ``--json``, ``--output`` or ``--partial`` is one of its inputs."""
    out = cfg.output
    outputs = {"--json": out.json, "--output": out.output, "--partial": partial}
    check_run_outputs(cfg, outputs, config=config)
