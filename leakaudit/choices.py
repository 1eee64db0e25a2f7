"""Selecting named items (scores, attacks) from a registry, in the registry's order."""

from __future__ import annotations

from collections.abc import Sequence


def ordered_selection(names: Sequence[str], known: Sequence[str], what: str) -> tuple[str, ...]:
    """``names`` de-duplicated in the order of ``known``.

    Raises:
        ValueError: naming the first unknown ``what`` (e.g. "score"), or an empty selection.
    """
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {what} {unknown[0]!r}; choose from: {', '.join(known)}")
    if not names:
        raise ValueError(f"select at least one {what}")
    return tuple(n for n in known if n in names)
