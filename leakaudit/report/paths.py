"""File paths in a report: stored relative to a base directory, never absolute, and
resolved again when a report's configuration is reused (``validate --report``).

The base is the config file's directory (the current directory when there is no config
file): the report's ``config`` section then reads like the YAML the user wrote. The
report's ``paths`` section says where that base is:

* ``{"base": "../project", "base_from": "report"}``: relative to the directory of the
  report file (``--json``, else ``--output`` with ``--format json``);
* ``{"base": "project", "base_from": "cwd"}``: relative to the current directory (a
  report printed to stdout or built by the Python API without an output file).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from leakaudit.config import ScanConfig, config_from_dict
from leakaudit.report.document import Report


def relative(path: str | None, base: Path) -> str | None:
    """``path`` (absolute, or relative to the current directory) relative to ``base``.

    ``None`` and ``-`` (stdout) are kept; a path on another drive becomes its file name.
    """
    if path is None or path == "-":
        return path
    target = os.path.abspath(os.path.expanduser(path))
    try:
        return Path(os.path.relpath(target, os.path.abspath(base))).as_posix()
    except ValueError:
        return Path(target).name


def _model_name(name: str, convert: Any) -> str:
    file_part, sep, factory = name.rpartition(":")
    if sep and file_part.endswith(".py"):
        return f"{convert(file_part)}:{factory}"
    return name


def convert_paths(report: Report, convert: Any) -> None:
    """Apply ``convert(path) -> str`` to every file path the report holds."""
    cfg = report.config
    _convert_in_warnings(report, convert, [cfg["data"]["root"], cfg["model"]["checkpoint"]])
    cfg["scores"]["calibration"] = convert(cfg["scores"].get("calibration"))
    cfg["model"]["checkpoint"] = convert(cfg["model"]["checkpoint"])
    cfg["model"]["name"] = _model_name(cfg["model"]["name"], convert)
    cfg["data"]["root"] = convert(cfg["data"]["root"])
    for key in ("json", "output"):
        cfg["output"][key] = convert(cfg["output"][key])
    cfg["gate"]["baseline"] = convert(cfg["gate"].get("baseline"))
    if report.gate.baseline is not None:
        report.gate.baseline["path"] = convert(report.gate.baseline["path"])
    report.model["name"] = _model_name(report.model["name"], convert)
    if report.model.get("checkpoint"):
        report.model["checkpoint"]["path"] = convert(report.model["checkpoint"]["path"])
    if "root" in report.dataset:
        report.dataset["root"] = convert(report.dataset["root"])


def _convert_in_warnings(report: Report, convert: Any, paths: list[str | None]) -> None:
    """The report's warnings name paths too (a skipped ImageFolder entry's root): convert
    those the report knows, as given and as absolute paths, longest first."""
    pairs = []
    for path in paths:
        if path and path != "-":
            new = convert(path)
            pairs += [(os.path.abspath(os.path.expanduser(path)), new), (path, new)]
    for old, new in sorted(pairs, key=lambda p: -len(p[0])):
        report.warnings = [w.replace(old, str(new)) for w in report.warnings]


def report_file(config: ScanConfig) -> str | None:
    """The file the JSON report goes to (``--json``, else a JSON ``--output``), if any."""
    out = config.output
    if out.json and out.json != "-":
        return out.json
    if out.format == "json" and out.output and out.output != "-":
        return out.output
    return None


def relativize(report: Report, base_dir: str | Path, report_path: str | Path | None) -> None:
    """Store the report's paths relative to ``base_dir`` and record where it lies."""
    base = Path(base_dir)
    convert_paths(report, lambda p: relative(p, base))
    if report_path is not None:
        where = Path(os.path.abspath(report_path)).parent
        report.paths = {"base": relative(str(base), where), "base_from": "report"}
    else:
        report.paths = {"base": relative(str(base), Path.cwd()), "base_from": "cwd"}
    report.paths["redacted"] = False


def report_base(report: dict[str, Any], report_path: str | Path | None) -> Path:
    """The directory a report's relative paths are relative to (see module docs)."""
    paths = report.get("paths") or {}
    base = paths.get("base") or "."
    if paths.get("base_from") == "report" and report_path is not None:
        return Path(report_path).parent / base
    return Path(base)


def config_from_report(report: dict[str, Any], report_path: str | Path | None) -> ScanConfig:
    """The scan configuration stored in ``report``, its relative paths resolved.

    Raises:
        ConfigError: the stored configuration is not valid.
    """
    cfg = config_from_dict(report["config"])
    base = report_base(report, report_path)

    def resolve(path: str | None) -> str | None:
        if path is None or path == "-" or Path(path).is_absolute():
            return path
        return os.path.normpath(base / path)

    cfg.model.checkpoint = resolve(cfg.model.checkpoint)
    cfg.model.name = _model_name(cfg.model.name, resolve)
    cfg.data.root = resolve(cfg.data.root)
    cfg.gate.baseline = resolve(cfg.gate.baseline)
    return cfg
