"""The ``table`` format: plain text for a file, compact rich tables on a narrow console."""

from __future__ import annotations

import io

from rich.console import Console

from leakaudit.report.formats import FormatName, TableFormat
from tests.test_report import hand_report


def test_table_format_text_has_no_colour_codes_and_every_score() -> None:
    report = hand_report()
    fmt = FormatName.table.to_format(top_k=3)
    assert isinstance(fmt, TableFormat)
    text = fmt.render(report)
    assert "\x1b[" not in text and "Top 3 riskiest samples" in text
    assert all(name in text for name in report.summary["scores"])


def test_table_format_shows_on_the_console_it_is_given() -> None:
    report = hand_report()
    console = Console(file=io.StringIO(), width=200, color_system=None)
    TableFormat(top_k=2).show(report, console)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "Top 2 riskiest samples" in out and "gate:" in out
