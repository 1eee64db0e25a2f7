"""leakaudit: which of a federated-learning client's samples can a server reconstruct
from the gradients it shares?

The public Python API is importable from here (``from leakaudit import scan``); see
docs/python-api.md. Names load lazily on first use, so ``import leakaudit`` and
``leakaudit --version`` do not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name → the module that defines it.
_EXPORTS: dict[str, str] = {
    # what `leakaudit scan` and `leakaudit validate` run
    "scan": "leakaudit.api",
    "validate": "leakaudit.api",
    "load_inputs": "leakaudit.api",
    "score_options": "leakaudit.api",
    # the engine and its inputs
    "score_samples": "leakaudit.scores.engine",
    "concat_results": "leakaudit.scores.engine",
    "ScoreOptions": "leakaudit.scores.options",
    "ScoreResult": "leakaudit.scores.options",
    # configuration
    "ScanConfig": "leakaudit.config",
    "load_config": "leakaudit.config",
    "config_from_dict": "leakaudit.config",
    "with_overrides": "leakaudit.config",
    "config_to_dict": "leakaudit.config",
    "demo_config": "leakaudit.demo",
    "DEMO_CHECKPOINT": "leakaudit.demo",
    # models and weights
    "build_model": "leakaudit.models",
    "load_checkpoint": "leakaudit.io.checkpoints",
    # defences
    "Defense": "leakaudit.defenses",
    "NoDefense": "leakaudit.defenses",
    "GaussianNoise": "leakaudit.defenses",
    "LaplaceNoise": "leakaudit.defenses",
    "Pruning": "leakaudit.defenses",
    "DPClipNoise": "leakaudit.defenses",
    "make_defense": "leakaudit.defenses",
    # results and their formats
    "Report": "leakaudit.report.document",
    "ValidationResult": "leakaudit.validation.result",
    "ReportFormat": "leakaudit.report.formats",
    "report_format": "leakaudit.report.formats",
    # errors
    "LeakauditError": "leakaudit.errors",
    "ConfigError": "leakaudit.errors",
    "InputError": "leakaudit.errors",
    "RuntimeFailure": "leakaudit.errors",
}

#: Spelled out for linters; tests check it equals ``_EXPORTS``.
__all__ = [
    "DEMO_CHECKPOINT",
    "ConfigError",
    "DPClipNoise",
    "Defense",
    "GaussianNoise",
    "InputError",
    "LaplaceNoise",
    "LeakauditError",
    "NoDefense",
    "Pruning",
    "Report",
    "ReportFormat",
    "RuntimeFailure",
    "ScanConfig",
    "ScoreOptions",
    "ScoreResult",
    "ValidationResult",
    "__version__",
    "build_model",
    "concat_results",
    "config_from_dict",
    "config_to_dict",
    "demo_config",
    "load_checkpoint",
    "load_config",
    "load_inputs",
    "make_defense",
    "report_format",
    "scan",
    "score_options",
    "score_samples",
    "validate",
    "with_overrides",
]

if TYPE_CHECKING:  # the same names, eagerly, for type checkers and IDEs
    from leakaudit.api import load_inputs, scan, score_options, validate
    from leakaudit.config import (
        ScanConfig,
        config_from_dict,
        config_to_dict,
        load_config,
        with_overrides,
    )
    from leakaudit.defenses import (
        Defense,
        DPClipNoise,
        GaussianNoise,
        LaplaceNoise,
        NoDefense,
        Pruning,
        make_defense,
    )
    from leakaudit.demo import DEMO_CHECKPOINT, demo_config
    from leakaudit.errors import ConfigError, InputError, LeakauditError, RuntimeFailure
    from leakaudit.io.checkpoints import load_checkpoint
    from leakaudit.models import build_model
    from leakaudit.report.document import Report
    from leakaudit.report.formats import ReportFormat, report_format
    from leakaudit.scores.engine import concat_results, score_samples
    from leakaudit.scores.options import ScoreOptions, ScoreResult
    from leakaudit.validation.result import ValidationResult


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'leakaudit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
