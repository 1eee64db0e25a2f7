"""Byte sizes as a config spells them: ``2GiB``, ``512MB`` or a plain integer."""

from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})

#: The binary units :func:`format_bytes` writes, largest first.
_BINARY = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))

#: The largest ``memory_budget``: 1 PiB, more than any machine has.
MAX_MEMORY_BUDGET = 2**50


def parse_bytes(value: int | str) -> int:
    """``2147483648``, ``"2GiB"``, ``"512MB"`` → bytes in [1, 1 PiB]; ``ValueError`` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        size: float = value
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*", value)
        if not m or m.group(2).lower() not in _UNITS:
            raise ValueError(f"expected bytes like 2GiB or 512MB, got {value!r}")
        size = float(m.group(1)) * _UNITS[m.group(2).lower()]  # inf when absurdly long
    else:
        raise ValueError(f"expected bytes like 2GiB or 512MB, got {value!r}")
    if not 1 <= size <= MAX_MEMORY_BUDGET:
        raise ValueError(f"must be between 1 byte and 1PiB (2**50 bytes), got {value!r}")
    return int(size)


def format_bytes(size: int) -> int | str:
    """Bytes as the config writes them: ``2147483648`` → ``"2GiB"``; a size that no binary
    unit divides stays an integer. ``parse_bytes(format_bytes(n)) == n``."""
    for unit, scale in _BINARY:
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return size
