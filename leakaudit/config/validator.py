"""A small validator from plain YAML data to typed dataclasses.

:func:`build` checks a mapping against a dataclass's type hints (``int``, ``float``,
``str``, ``bool``, ``Literal``, unions, lists, dicts, nested dataclasses; a ``float`` must be
finite) and its ``__post_init__`` checks, and every error names the bad key by its dotted
path, with a did-you-mean hint for an unknown one (``data.per_clas: unknown key (did you
mean per_class?)``). Errors are :class:`~leakaudit.errors.ConfigError` (exit 2).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import types
import typing
from typing import Any, Literal

from leakaudit.errors import ConfigError
from leakaudit.registry import closest, unknown_message


class FieldError(ConfigError):
    """A bad value of one field; the loader prefixes the field's dotted path."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.detail = message


def require(ok: bool, key: str, message: str) -> None:
    """Raise :class:`FieldError` for field ``key`` unless ``ok`` (``__post_init__`` checks)."""
    if not ok:
        raise FieldError(key, message)


#: ``"unknown score 'i2g' (did you mean i2f?)"``: the registry's message, for the schema's
#: ``__post_init__`` checks.
unknown = unknown_message


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against type ``tp`` (lightly converting int → float)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in args:  # first match wins
            try:
                return _coerce(arg, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {_describe(value)}")
    if tp is type(None):
        if value is None:
            return None
    elif origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{key}: expected one of {_type_name(tp)}, got {value!r}")
    elif dataclasses.is_dataclass(tp):
        return build(typing.cast(type, tp), value, key)
    elif origin is list:
        if isinstance(value, list | tuple):
            return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            return {str(k): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an int beyond the float range
                number = math.inf
            if not math.isfinite(number):
                raise ConfigError(f"{key}: expected a finite number, got {value!r}")
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool) and key.endswith(".id"):
            return str(value)  # allowlisted sample ids may be dataset indices
        if isinstance(value, datetime.date) and key.endswith(".expires"):
            return value.isoformat()  # YAML reads an unquoted 2026-01-31 as a date
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {_describe(value)}")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    return f"{type(value).__name__} {value!r}" if not isinstance(value, dict) else "a mapping"


def build(cls: type, raw: Any, path: str) -> Any:
    """Build dataclass ``cls`` from mapping ``raw``; errors are prefixed by ``path``."""
    where = f"{path}: " if path else ""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}expected a mapping, got {_describe(raw)}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in known:
            near = closest(str(key), known)
            hint = f" (did you mean {near}?)" if near else f"; known: {', '.join(known)}"
            raise ConfigError(f"{path + '.' if path else ''}{key}: unknown key{hint}")
    missing = [
        name
        for name, f in known.items()
        if name not in raw
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{path + '.' if path else ''}{missing[0]}: required key is missing")
    prefix = path + "." if path else ""
    kwargs = {k: _coerce(hints[k], v, prefix + k) for k, v in raw.items()}
    try:
        return cls(**kwargs)
    except FieldError as exc:
        raise ConfigError(f"{prefix}{exc.key}: {exc.detail}") from None
