"""Loading configs: YAML files and mappings in, :class:`ScanConfig` out, and the
command-line overrides of single keys (validated with the same rules)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from leakaudit.config.schema import ScanConfig
from leakaudit.config.validator import build
from leakaudit.errors import ConfigError


def config_from_dict(raw: dict[str, Any] | None) -> ScanConfig:
    """Validate a plain mapping (as read from YAML) into a :class:`ScanConfig`."""
    cfg: ScanConfig = build(ScanConfig, raw or {}, "")
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A :class:`ScanConfig` (or any section) as plain JSON/YAML-ready data."""
    return dataclasses.asdict(cfg)


def _resolve(value: str | None, base: Path) -> str | None:
    """``value`` made relative to ``base`` when it is a relative local path."""
    if value is None or Path(value).is_absolute():
        return value
    return str(base / value)


def load_config(path: str | Path) -> ScanConfig:
    """Read and validate a YAML config. Relative paths in it (``model.checkpoint``,
    ``data.root``, a ``file.py:factory`` model) are relative to the file's folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}".replace("\n", " ")) from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    cfg = config_from_dict(raw)
    base = path.parent
    cfg.model.checkpoint = _resolve(cfg.model.checkpoint, base)
    cfg.data.root = _resolve(cfg.data.root, base)
    file_part, sep, factory = cfg.model.name.rpartition(":")
    if sep and file_part.endswith(".py"):
        cfg.model.name = f"{_resolve(file_part, base)}:{factory}"
    return cfg


def with_overrides(cfg: ScanConfig, overrides: dict[str, Any]) -> ScanConfig:
    """A copy of ``cfg`` with dotted keys (``"scores.device"``) replaced, re-validated.

    ``None`` values are ignored (a flag that was not given).
    """
    raw = config_to_dict(cfg)
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config_from_dict(raw)
