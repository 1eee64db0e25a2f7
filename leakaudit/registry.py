"""Name → entry registries for every pluggable kind (scores, attacks, models, defences, …).

A :class:`Registry` keeps its entries in registration order (the order reports and
``--help`` list them in), refuses a second entry under a taken name, and answers an
unknown name with one line that names the closest known one, or lists the choices:
``unknown score 'i2g' (did you mean i2f?)``. :func:`closest` is the package's only
"did you mean" lookup; every message that suggests a name asks it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """A name that is not registered; the message suggests the closest one or the choices.

    Attributes:
        kind: what was looked up (``"score"``, ``"attack"``, …).
        name: the unknown name.
    """

    def __init__(self, kind: str, name: str, choices: Iterable[str]) -> None:
        super().__init__(unknown_message(kind, name, choices))
        self.kind = kind
        self.name = name


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice spelled most like ``name`` (difflib ratio ≥ 0.6), or ``None``."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_message(kind: str, name: str, choices: Iterable[str]) -> str:
    """``"unknown score 'i2g' (did you mean i2f?)"``, or ``"…; choose from: a, b"``."""
    choices = list(choices)
    near = closest(name, choices)
    hint = f" (did you mean {near}?)" if near else f"; choose from: {', '.join(choices)}"
    return f"unknown {kind} {name!r}{hint}"


class Registry(Generic[T]):
    """Named entries of one kind, in registration order.

    Example:
        >>> formats: Registry[str] = Registry("format")
        >>> formats.register("json", "JSON report")
        'JSON report'
        >>> formats["jsn"]
        Traceback (most recent call last):
        ...
        leakaudit.registry.UnknownNameError: unknown format 'jsn' (did you mean json?)
    """

    def __init__(self, kind: str, entries: Iterable[tuple[str, T]] = ()) -> None:
        """Args:
        kind: what the entries are, for messages (``"score"``, ``"attack"``).
        entries: ``(name, entry)`` pairs to register, in order.
        """
        self.kind = kind
        self._entries: dict[str, T] = {}
        for name, entry in entries:
            self.register(name, entry)

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name`` and return it.

        Raises:
            ValueError: ``name`` is already registered.
        """
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def __getitem__(self, name: str) -> T:
        """The entry named ``name``.

        Raises:
            UnknownNameError: ``name`` is not registered (a ``ValueError``).
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self.kind, name, self._entries) from None

    def get(self, name: str, default: T | None = None) -> T | None:
        """The entry named ``name``, or ``default``."""
        return self._entries.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        """Every name, in registration order."""
        return tuple(self._entries)

    def items(self) -> tuple[tuple[str, T], ...]:
        """Every ``(name, entry)``, in registration order."""
        return tuple(self._entries.items())

    def check(self, name: str) -> str:
        """``name`` if it is registered.

        Raises:
            UnknownNameError: it is not.
        """
        self[name]
        return name

    def select(self, names: Sequence[str]) -> tuple[str, ...]:
        """``names`` de-duplicated, in registration order.

        Raises:
            UnknownNameError: naming the first unknown name.
            ValueError: ``names`` is empty.
        """
        for name in names:
            self.check(name)
        if not names:
            raise ValueError(f"select at least one {self.kind}")
        return tuple(n for n in self._entries if n in names)

    def unknown(self, name: str) -> str:
        """The message for an unknown ``name`` (see :func:`unknown_message`)."""
        return unknown_message(self.kind, name, self._entries)

    def help_text(self, describe: Callable[[T], str] | None = None) -> str:
        """The choices for ``--help``: ``"a, b, c"``, or ``"a (…), b (…)"`` with ``describe``."""
        if describe is None:
            return ", ".join(self._entries)
        return ", ".join(f"{n} ({describe(e)})" for n, e in self._entries.items())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"
