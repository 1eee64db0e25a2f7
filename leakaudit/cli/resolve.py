"""One config resolver for ``scan`` and ``validate``: flags + config file + demo + report →
:class:`~leakaudit.config.ScanConfig`.

Where the configuration starts from (one of them):

* ``--report FILE`` (``validate`` only): the configuration the report stores, read as
  data (:func:`leakaudit.validation.sources.report_config`: trust and model factories only
  from this run's own flags);
* ``--demo``: the shipped demo;
* ``--config FILE``: a YAML file;
* ``--data``/``--data-kind`` alone: the defaults.

The command's flags then override it (``None``: a flag not given), and ``--defense``
becomes the ``defense`` section.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from leakaudit.cli.flags import parse_defense
from leakaudit.cli.options import Keys, flag_overrides
from leakaudit.config import ScanConfig, load_config, with_overrides
from leakaudit.errors import ConfigError

#: More config overrides a command derives from its flags and the base configuration.
Extra = Callable[[ScanConfig], Mapping[str, Any]]


def resolve_config(
    command: str,
    params: Mapping[str, Any],
    keys: Keys,
    *,
    report: Mapping[str, Any] | None = None,
    report_path: Path | None = None,
    extra: Extra | None = None,
) -> ScanConfig:
    """The configuration a command runs with.

    Args:
        command: ``scan`` or ``validate`` (named in the "nothing to ..." message).
        params: the command's parsed parameters (``ctx.params``): ``config``, ``demo``,
            ``data``, ``data_kind``, ``defense``, optionally ``target_error``, and every
            name in ``keys``.
        keys: which parameters set which config keys (:mod:`leakaudit.cli.options`).
        report: the scan report ``validate --report`` read (JSON data), if any.
        report_path: its path (the report's relative paths are relative to it).
        extra: more overrides computed from the base configuration (``scan``'s gate flags).

    Returns:
        The validated :class:`ScanConfig`.

    Raises:
        ConfigError: no source, sources that exclude each other, a bad flag or value.
    """
    overrides = flag_overrides(params, keys)
    base = _base_config(command, params, overrides, report, report_path)
    defense = params.get("defense")
    if defense:
        tau = params.get("target_error") or base.defense.target_error
        overrides["defense"] = parse_defense(defense, tau)
    if extra is not None:
        overrides.update(extra(base))
    return with_overrides(base, overrides)


def _base_config(
    command: str,
    params: Mapping[str, Any],
    overrides: Mapping[str, Any],
    report: Mapping[str, Any] | None,
    report_path: Path | None,
) -> ScanConfig:
    """The configuration before the flags: the report's, the demo's, the file's or the
    defaults, after checking that exactly one source was given."""
    config, demo = params.get("config"), params.get("demo")
    if not (report is not None or config or demo or params.get("data") or params.get("data_kind")):
        sources = ["--config FILE", "--data PATH", "--demo"]
        if "report" in params:
            sources.insert(0, "--report FILE")
        raise ConfigError(f"nothing to {command}: give {', '.join(sources[:-1])} or --demo")
    if report is not None:
        if config or demo:
            raise ConfigError("--report carries its own configuration; drop --config/--demo")
        from leakaudit.report.paths import config_from_report
        from leakaudit.validation.sources import report_config

        stored = config_from_report(dict(report), report_path)
        return report_config(stored, overrides)  # trust and code only from the flags
    if demo and config is not None:
        raise ConfigError("--demo and --config exclude each other")
    if demo:
        from leakaudit.demo import demo_config

        return demo_config()
    return load_config(config) if config is not None else ScanConfig()
