"""Text from the data (sample ids, class and file names) made safe to print.

A client chooses its file and folder names: an ESC sequence in one could recolour or
clear a CI terminal, a bidi override could reorder what a reviewer reads, and markup
could change a table. Such text is shown escaped, ``repr``-style (``\\x1b``), never
interpreted.
"""

from __future__ import annotations

import re
import unicodedata

from rich.markup import escape

#: Unicode format characters that reorder or hide text (bidi embeddings, overrides,
#: isolates and marks); other format characters (joiners in emoji) are kept.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _unsafe(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI


def printable(text: str) -> str:
    """``text`` with control, line-separator and bidi characters escaped as in ``repr``
    (``"a\\x1b[31m"``); other text is unchanged."""
    if not any(_unsafe(c) for c in text):
        return text
    return "".join(c.encode("unicode_escape").decode("ascii") if _unsafe(c) else c for c in text)


def terminal_text(text: str) -> str:
    """``text`` for a rich table cell: :func:`printable`, with rich markup escaped."""
    return escape(printable(text))


def md_code(text: str) -> str:
    """``text`` as a markdown code span: :func:`printable`, fenced by more backticks than
    it contains, so nothing in it is rendered (HTML, links, emphasis)."""
    text = printable(text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def count(n: int, noun: str) -> str:
    """``"1 sample"``, ``"3 samples"``: a count with its noun in the right number."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
