"""The ``md`` format: a CI job summary with the top-k table."""

from __future__ import annotations

from leakaudit.report.formats import FormatName, MarkdownFormat
from leakaudit.report.formats.markdown import render_markdown
from tests.test_report import hand_report


def test_markdown_format_is_render_markdown_with_top_k() -> None:
    report = hand_report()
    fmt = FormatName.md.to_format(top_k=2)
    assert isinstance(fmt, MarkdownFormat) and fmt.extension == ".md"
    text = fmt.render(report)
    assert text == render_markdown(report, 2)
    assert "### Top 2 riskiest samples" in text and text.startswith("## leakaudit scan")
