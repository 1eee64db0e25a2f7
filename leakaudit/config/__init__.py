"""The validated configuration of a scan: YAML in, dataclasses out.

Every error names the bad key by its dotted path (``data.per_clas: unknown key (did you
mean per_class?)``) and raises :class:`~leakaudit.errors.ConfigError` (exit 2).
Command-line flags override values through :func:`with_overrides`, which validates
them with the same rules.

- :mod:`~leakaudit.config.schema`: the sections (:class:`ScanConfig` and its parts), and
  the one bridge to the engine, :meth:`ScanConfig.score_options`. The ``scores`` defaults
  are :class:`~leakaudit.scores.options.ScoreOptions`' own, ``data`` is
  :class:`~leakaudit.io.spec.DataSpec`, and a defence's parameters are its dataclass's.
- :mod:`~leakaudit.config.units`: byte sizes (``memory_budget: 2GiB``).
- :mod:`~leakaudit.config.validator`: the generic mapping → dataclass checker.
- :mod:`~leakaudit.config.loading`: YAML files, mappings and overrides.
"""

from leakaudit.config.loading import config_from_dict, config_to_dict, load_config, with_overrides
from leakaudit.config.schema import (
    DEFAULT_RISK_SCORE,
    AllowEntry,
    DataConfig,
    DefenseConfig,
    GateConfig,
    GateRule,
    ModelConfig,
    OutputConfig,
    ScanConfig,
    ScoresConfig,
)
from leakaudit.config.units import format_bytes, parse_bytes
from leakaudit.config.validator import FieldError

__all__ = [
    "DEFAULT_RISK_SCORE",
    "AllowEntry",
    "DataConfig",
    "DefenseConfig",
    "FieldError",
    "GateConfig",
    "GateRule",
    "ModelConfig",
    "OutputConfig",
    "ScanConfig",
    "ScoresConfig",
    "config_from_dict",
    "config_to_dict",
    "format_bytes",
    "load_config",
    "parse_bytes",
    "with_overrides",
]
