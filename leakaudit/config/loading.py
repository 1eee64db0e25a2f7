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

#: The largest config file read; a real one is a few kilobytes.
MAX_CONFIG_BYTES = 1 << 20

ALIASES_REFUSED = "config uses YAML aliases (&/*), which leakaudit refuses"


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses anchors and aliases.

    An alias shares a node; nested ones (a "billion laughs" document) expand
    exponentially when the data is walked, copied or written, and a config never needs them.
    """

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ConfigError(f"line {event.start_mark.line + 1}: {ALIASES_REFUSED}")
        return super().compose_node(parent, index)


def parse_yaml(text: str) -> Any:
    """YAML text → plain data, refusing aliases; :class:`ConfigError` if it is not valid."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}".replace("\n", " ")) from None
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply") from None


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
        with path.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: config file is too large (over {MAX_CONFIG_BYTES} bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        raw = parse_yaml(text)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    cfg = config_from_dict(raw)
    base = path.parent
    cfg.model.checkpoint = _resolve(cfg.model.checkpoint, base)
    cfg.data.root = _resolve(cfg.data.root, base)
    cfg.gate.baseline = _resolve(cfg.gate.baseline, base)
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
