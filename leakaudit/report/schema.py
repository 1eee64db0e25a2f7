"""The JSON report's schema (a JSON Schema subset) and a small checker for it.

docs/report-schema.md documents the same layout; ``tests/test_report_schema.py`` checks
real reports against :data:`REPORT_SCHEMA`. The checker understands ``type``,
``properties``, ``required``, ``additionalProperties``, ``items`` and ``enum``: enough
for this schema without a jsonschema dependency (the dict is valid JSON Schema too).
"""

from __future__ import annotations

from typing import Any

from leakaudit.calibration.apply import PSNR_RULE
from leakaudit.scores.names import ALL_SCORES

_NUM = {"type": ["number", "null"]}
_STR = {"type": "string"}
_INT = {"type": "integer"}
_DIRECTION = {"enum": ["higher_is_riskier", "lower_is_riskier"]}


def _obj(props: dict[str, Any], extra: bool | dict[str, Any] = False) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": extra,
    }


_STATS = _obj(
    {
        "count": _INT,
        "non_finite": _INT,
        **{k: _NUM for k in ("min", "q05", "q25", "median", "q75", "q95", "max", "mean")},
    }
)

_RULE = _obj(
    {
        "score": {"enum": list(ALL_SCORES)},
        "risky_when": {"enum": ["below", "above"]},
        "threshold": {"type": "number"},
        "max_fraction": {"type": "number"},
        "considered": _INT,
        "risky": _INT,
        "fraction": {"type": "number"},
        "passed": {"type": "boolean"},
        "offending": {"type": "array", "items": _STR},
        "allowlisted": {"type": "array", "items": _STR},
        "non_finite": {"type": "array", "items": _STR},
    }
)

_SAMPLE = _obj(
    {
        "index": _INT,
        "id": _STR,
        "label": _INT,
        "rank": _INT,
        "percentile": _NUM,
        "scores": {
            "type": "object",
            "properties": {n: _NUM for n in ALL_SCORES},
            "additionalProperties": False,
        },
        "diagnostics": {
            "type": "object",
            "properties": {"converged": {"type": "boolean"}},
            "required": ["converged"],
            "additionalProperties": {"type": ["number", "boolean", "null"]},
        },
        "sigma_needed": _NUM,
        "predicted_psnr_db": _NUM,
        "psnr_interval_db": {"type": ["array", "null"], "items": _NUM},
    }
)

#: The report, version :data:`leakaudit.report.document.SCHEMA_VERSION`.
REPORT_SCHEMA: dict[str, Any] = _obj(
    {
        "schema_version": _STR,
        "tool": _obj({"name": {"enum": ["leakaudit"]}, "version": _STR}),
        "created": _STR,
        "config": {"type": "object"},
        "model": {
            "type": "object",
            "required": ["name", "num_classes", "parameters", "checkpoint"],
            "properties": {
                "name": _STR,
                "num_classes": _INT,
                "parameters": _INT,
                "checkpoint": {
                    "type": ["object", "null"],
                    "required": ["path", "sha256", "format", "trusted"],
                },
            },
        },
        "dataset": {"type": "object", "required": ["kind", "num_samples"]},
        "risk": {
            "type": "object",
            "properties": {
                "score": {"enum": [*ALL_SCORES, PSNR_RULE]},
                "direction": _DIRECTION,
                "direction_source": {"enum": ["default", "config", "calibration"]},
                "calibrated": {"type": "boolean"},
                "calibration": {"type": "object", "required": ["rule", "cv_spearman"]},
            },
            "required": ["score", "direction", "direction_source", "calibrated"],
            "additionalProperties": False,
        },
        "defense": {"type": "object", "required": ["kind"]},
        "whatif": {
            "type": "object",
            "required": ["target_error", "available"],
            "properties": {
                "target_error": {"type": "number"},
                "available": {"type": "boolean"},
                "sigma_dataset": _NUM,
                "sigma_median": _NUM,
                "below_target_under_defense": {"type": ["integer", "null"]},
            },
            "additionalProperties": False,
        },
        "samples": {"type": "array", "items": _SAMPLE},
        "summary": _obj(
            {
                "num_samples": _INT,
                "scores": {"type": "object", "additionalProperties": _STATS},
                "device": _STR,
                "backend": _STR,
                "dtype": {"enum": ["float32", "float64"]},
                "seconds": {"type": "number"},
                "samples_per_second": _NUM,
                "resumed_samples": _INT,
                "non_converged": {"type": "array", "items": _STR},
            }
        ),
        "gate": _obj(
            {
                "passed": {"type": "boolean"},
                "rules": {"type": "array", "items": _RULE},
                "offending": {"type": "array", "items": _STR},
                "allowlist": {"type": "array", "items": _obj({"id": _STR, "reason": _STR})},
                "unused_allowlist": {"type": "array", "items": _STR},
            }
        ),
        "warnings": {"type": "array", "items": _STR},
        "paths": _obj(
            {
                "base": {"type": ["string", "null"]},
                "base_from": {"enum": ["report", "cwd"]},
                "redacted": {"type": "boolean"},
            }
        ),
    }
)

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _is(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[name])


def schema_errors(value: Any, schema: dict[str, Any] = REPORT_SCHEMA, path: str = "$") -> list[str]:
    """Every place where ``value`` breaks ``schema``, as ``"$.samples[3].rank: ..."``."""
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} is not one of {schema['enum']}"]
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is(value, t) for t in types):
            return [f"{path}: expected {' or '.join(types)}, got {type(value).__name__}"]
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}: missing key {key!r}")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                errors += schema_errors(item, props[key], f"{path}.{key}")
            elif extra is False:
                errors.append(f"{path}: unexpected key {key!r}")
            elif isinstance(extra, dict):
                errors += schema_errors(item, extra, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{i}]")
    return errors
