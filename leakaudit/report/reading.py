"""Reading a scan report back (``validate --report``): the file may be crafted, so it is
read as bounded data and its shape is checked before anything uses it.

- only a regular file, at most :data:`MAX_REPORT_BYTES`, strict UTF-8 JSON, nested at
  most :data:`MAX_DEPTH` levels;
- a ``schema_version`` whose major version this leakaudit writes;
- the parts ``validate`` reads (:data:`READ_SCHEMA`) of the right types;
- sample indices that are integers ``>= 0`` and unique (:func:`check_sample_indices`
  also checks them against the dataset's size once it is loaded).

Every refusal is an :class:`~leakaudit.errors.InputError` naming the file and the field.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from leakaudit.errors import InputError
from leakaudit.report.document import SCHEMA_VERSION
from leakaudit.report.schema import schema_errors

#: The largest report read: 512 MiB (a real report takes about 1 KiB per sample).
MAX_REPORT_BYTES = 512 * 2**20

#: The deepest nesting of lists and objects read; a real report nests about 6 levels.
MAX_DEPTH = 64

#: Indices and labels are int64 in the tools that use them.
_INT64 = 2**63

_NUM = {"type": ["number", "null"]}
_INT = {"type": "integer"}
_OBJ: dict[str, Any] = {"type": "object"}

#: The parts of a report ``validate`` reads, with their types (JSON Schema subset, see
#: :func:`leakaudit.report.schema.schema_errors`); other keys are not checked here.
READ_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema_version", "config", "samples"],
    "properties": {
        "schema_version": {"type": "string"},
        "config": {
            "type": "object",
            "properties": {"model": _OBJ, "data": _OBJ, "scores": _OBJ},
        },
        "model": {
            "type": "object",
            "properties": {
                "checkpoint": {
                    "type": ["object", "null"],
                    "properties": {"sha256": {"type": ["string", "null"]}},
                }
            },
        },
        "risk": {"type": "object", "properties": {"score": {"type": ["string", "null"]}}},
        "paths": {
            "type": "object",
            "properties": {
                "base": {"type": ["string", "null"]},
                "base_from": {"enum": ["report", "cwd"]},
            },
        },
        "samples": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "label", "scores"],
                "properties": {
                    "index": _INT,
                    "id": {"type": "string"},
                    "label": _INT,
                    "scores": {"type": "object", "additionalProperties": _NUM},
                },
            },
        },
    },
}


def _read_bounded(path: Path, flag: str = "--report") -> bytes:
    """At most :data:`MAX_REPORT_BYTES` of a regular file, without blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise InputError(f"{flag} {path}: cannot read the scan report ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            what = "a directory" if stat.S_ISDIR(info.st_mode) else "a device, pipe or socket"
            raise InputError(f"{flag} {path}: not a regular file ({what})")
        if info.st_size > MAX_REPORT_BYTES:
            raise InputError(
                f"{flag} {path}: the file is too large ({info.st_size} bytes; a scan "
                f"report is read only up to {MAX_REPORT_BYTES // 2**20} MiB)"
            )
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_REPORT_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{flag} {path}: cannot read the scan report ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_REPORT_BYTES:  # it grew while being read
        raise InputError(f"{flag} {path}: the file is too large (over {MAX_REPORT_BYTES} bytes)")
    return data


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether lists and objects in ``value`` nest deeper than ``limit`` (no recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > limit:
                return True
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return False


def _check_version(version: str, where: str) -> None:
    major = SCHEMA_VERSION.split(".")[0]
    if version.split(".")[0] != major:
        raise InputError(
            f"{where}: schema_version {version!r} is not supported (this leakaudit reads "
            f"{major}.x reports): rescan with this version"
        )


def _sample_problem(samples: list[dict[str, Any]]) -> str | None:
    """The first bad index, label or score of the samples, as ``$.samples[i].key: ...``."""
    seen: dict[int, int] = {}
    for i, sample in enumerate(samples):
        where = f"$.samples[{i}]"
        index, label = sample["index"], sample["label"]
        if not 0 <= index < _INT64:
            return f"{where}.index: {index} is not a dataset position (an integer >= 0)"
        if index in seen:
            return f"{where}.index: {index} is a duplicate of $.samples[{seen[index]}].index"
        seen[index] = i
        if not 0 <= label < _INT64:
            return f"{where}.label: {label} is not a class (an integer >= 0)"
        for name, value in sample["scores"].items():
            try:
                float(value) if value is not None else None
            except OverflowError:
                return f"{where}.scores.{name}: {value} is too large for a number"
    return None


def check_report(raw: Any, where: str) -> dict[str, Any]:
    """Check a parsed report's shape (see the module docs); returns it.

    Raises:
        InputError: ``<where>: $.samples[3].index: expected integer, got float``.
    """
    if not isinstance(raw, dict) or not {"samples", "config"} <= set(raw):
        raise InputError(f"{where}: not a leakaudit scan report (JSON)")
    if _depth_exceeds(raw, MAX_DEPTH):
        raise InputError(f"{where}: nested more than {MAX_DEPTH} levels deep")
    if isinstance(raw.get("schema_version"), str):
        _check_version(raw["schema_version"], where)
    errors = schema_errors(raw, READ_SCHEMA)
    if errors:
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise InputError(f"{where}: {errors[0]}{more}")
    problem = _sample_problem(raw["samples"])
    if problem:
        raise InputError(f"{where}: {problem}")
    return raw


def read_report(path: str | Path, flag: str = "--report") -> dict[str, Any]:
    """Read and check the scan report at ``path`` (``validate --report``; ``flag`` names
    the option in messages, e.g. ``--baseline``).

    Raises:
        InputError: not a regular file, larger than :data:`MAX_REPORT_BYTES`, not UTF-8
            JSON, too deeply nested, an unknown major ``schema_version``, or a field
            ``validate`` reads of the wrong type (the message names the field).
    """
    path = Path(path)
    where = f"{flag} {path}"
    data = _read_bounded(path, flag)
    try:
        raw = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON, nested too deep
        raise InputError(f"{where}: not a leakaudit scan report (JSON)") from None
    return check_report(raw, where)
