"""Limits on what one number in a config, a flag or a report may make the tool build.

Checked when the configuration is validated, so that a refusal costs nothing: a model of
10¹² classes, or a report that widens an architecture a millionfold, is refused before
anything is allocated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from leakaudit.config.validator import FieldError
from leakaudit.errors import ConfigError

if TYPE_CHECKING:
    from leakaudit.config.schema import ModelConfig

#: Most classes, input channels and input side a model may be built with (an explicit
#: ``model.num_classes``, ``in_channels`` or ``image_size``, from a config, a flag or a
#: report). Past them one number would allocate gigabytes before anything is checked.
MODEL_SIZE_LIMITS = {"num_classes": 100_000, "in_channels": 1024, "image_size": 4096}

#: ``model.kwargs`` a *report* may pass to the architecture: switches that do not change
#: how large the model is. Anything else (``width``, ``depth``, torchvision's
#: ``width_per_group`` or ``image_size``, ...) must come from the user's own config.
REPORT_MODEL_KWARGS = frozenset(
    {
        "init",
        "shortcut",
        "batchnorm",
        "dropout",
        "attention_dropout",
        "stochastic_depth_prob",
        "zero_init_residual",
        "init_weights",
        "aux_logits",
        "transform_input",
    }
)


def check_model_size(key: str, value: int | None) -> None:
    """Refuse ``model.<key>`` past :data:`MODEL_SIZE_LIMITS` (a config field check).

    Raises:
        FieldError: ``num_classes: must be at most 100000, got 1000000000000 (...)``.
    """
    limit = MODEL_SIZE_LIMITS.get(key)
    if limit is not None and isinstance(value, int) and value > limit:
        raise FieldError(
            key,
            f"must be at most {limit}, got {value} (a larger model is refused before it "
            "is built; see docs/security.md)",
        )


def check_report_model(model: ModelConfig) -> None:
    """Refuse ``model.kwargs`` of a report that are not in :data:`REPORT_MODEL_KWARGS`.

    A report may choose a built-in or torchvision architecture, but not the arguments
    that size it (a width of 10⁶ allocates terabytes before the checkpoint is compared).

    Raises:
        ConfigError: names the kwarg and says to validate with the user's own config.
    """
    for key, value in model.kwargs.items():
        if key not in REPORT_MODEL_KWARGS or not _scalar(value):
            raise ConfigError(
                f"the report sets model kwarg {key!r} = {_short(value)}, which a report "
                "cannot choose (it may size the model; a report may set only "
                f"{', '.join(sorted(REPORT_MODEL_KWARGS))} to plain values): validate "
                "with your own config instead (leakaudit validate --config FILE)"
            )


def _scalar(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= 64
    return value is None or isinstance(value, bool | int | float)


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."
