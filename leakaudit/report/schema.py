"""The JSON Schemas of leakaudit's documents, and the checker every reader uses.

Each schema is a package file, ``leakaudit/schemas/<name>.schema.json`` (JSON Schema
draft 2020-12, with ``$schema`` and ``$id``): that file is the one definition, which
``leakaudit schema <name>`` prints and :func:`schema_errors` checks against. The names
are the files that exist (:func:`schema_names`): ``report`` (``scan --json``, see
docs/report-schema.md), ``validation`` (``validate --json``), ``calibration``
(``calibration.json``, see docs/calibration.md); another document gets its schema by
adding its file.

:func:`schema_errors` runs :mod:`jsonschema` and words each problem as
``"$.samples[3].rank: expected integer, got str"``. Unlike plain JSON Schema, an
``integer`` here is never a float (``1.0`` is refused): readers use such values as
positions.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from leakaudit.registry import Registry

if TYPE_CHECKING:
    from jsonschema import ValidationError
    from jsonschema.protocols import Validator

#: The schemas' directory inside the package.
SCHEMA_DIR = "schemas"

#: The file suffix that makes a file in :data:`SCHEMA_DIR` a schema.
SUFFIX = ".schema.json"

#: Names listed first, in this order (other schema files follow alphabetically).
ORDER = ("report", "validation", "calibration")


def _strict_integer(checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


@cache
def validator_class() -> type[Validator]:
    """Draft 2020-12 whose ``integer`` is a Python ``int`` (not ``1.0``, not ``True``);
    :mod:`jsonschema` is imported on first use (the CLI starts without it)."""
    from jsonschema import Draft202012Validator
    from jsonschema.validators import extend

    checker = Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer)
    return extend(Draft202012Validator, type_checker=checker)


def _files() -> dict[str, Any]:
    folder = resources.files("leakaudit").joinpath(SCHEMA_DIR)
    found = {
        entry.name.removesuffix(SUFFIX): entry
        for entry in folder.iterdir()
        if entry.name.endswith(SUFFIX) and entry.is_file()
    }
    rank = {name: i for i, name in enumerate(ORDER)}
    return {n: found[n] for n in sorted(found, key=lambda n: (rank.get(n, len(ORDER)), n))}


@cache
def schema_registry() -> Registry[Any]:
    """Schema name → its package file, for the files that exist (see module docs)."""
    return Registry("schema", _files().items())


def schema_names() -> tuple[str, ...]:
    """The documents that have a schema file: ``("report", "validation", ...)``."""
    return schema_registry().names()


def schema_text(name: str) -> str:
    """The schema file ``name`` as shipped (UTF-8 JSON text).

    Raises:
        leakaudit.registry.UnknownNameError: no schema of that name (a ``ValueError``
            whose message lists the names).
    """
    return str(schema_registry()[name].read_text(encoding="utf-8"))


def load_schema(name: str) -> dict[str, Any]:
    """The schema ``name`` as a dict (``tests/test_schema_files.py`` checks that every
    file is a valid draft 2020-12 schema)."""
    schema: dict[str, Any] = json.loads(schema_text(name))
    return schema


#: The scan report's schema, for :data:`leakaudit.report.document.SCHEMA_VERSION`.
REPORT_SCHEMA: dict[str, Any] = load_schema("report")


def _where(error: ValidationError) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)


def _message(error: ValidationError) -> list[str]:
    """``error`` in the checker's words (one line per missing or unexpected key)."""
    path, value, schema = _where(error), error.instance, error.schema
    if not isinstance(schema, dict):
        return [f"{path}: {error.message}"]
    if error.validator == "type":
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        return [f"{path}: expected {' or '.join(types)}, got {type(value).__name__}"]
    if error.validator == "enum":
        return [f"{path}: {value!r} is not one of {schema['enum']}"]
    if error.validator == "const":
        return [f"{path}: {value!r} is not {schema['const']!r}"]
    if error.validator == "required" and isinstance(value, dict):
        return [f"{path}: missing key {k!r}" for k in schema["required"] if k not in value]
    if error.validator == "additionalProperties" and isinstance(value, dict):
        known = schema.get("properties", {})
        return [f"{path}: unexpected key {k!r}" for k in value if k not in known]
    return [f"{path}: {error.message}"]


def schema_errors(value: Any, schema: dict[str, Any] = REPORT_SCHEMA) -> list[str]:
    """Every place where ``value`` breaks ``schema`` (default: the report's), as
    ``"$.samples[3].rank: expected integer, got str"``."""
    lines: list[str] = []
    for error in validator_class()(schema).iter_errors(value):
        lines += [line for line in _message(error) if line not in lines]
    return lines
