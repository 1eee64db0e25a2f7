"""Helpers for error messages that list choices."""

from __future__ import annotations

from collections.abc import Iterable

from leakaudit.registry import closest


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or ``""`` when none is close."""
    near = closest(name, choices)
    return f"; did you mean {near!r}?" if near else ""


def shorten(items: list[str], limit: int = 5) -> str:
    """Join at most ``limit`` items, then ``"and N more"``."""
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"
