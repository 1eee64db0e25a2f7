"""Report formats, one per module, behind one interface (:class:`ReportFormat`).

- :mod:`~leakaudit.report.formats.table`: rich tables for a terminal (``table``).
- :mod:`~leakaudit.report.formats.markdown`: a CI job summary (``md``).
- :mod:`~leakaudit.report.formats.json_format`: the full versioned document (``json``).
- :mod:`~leakaudit.report.formats.sarif`: SARIF 2.1.0 for code scanning (``sarif``).
- :mod:`~leakaudit.report.formats.junit`: JUnit XML, a test case per gate rule (``junit``).
- :mod:`~leakaudit.report.formats.html`: one self-contained page for a browser (``html``).

:class:`FormatName` is the one map from a format's name (the CLI's ``--format`` choices,
``output.format`` in a config) to its implementation. A new format is a module here with
a :class:`ReportFormat` subclass, and a member of :class:`FormatName` with its branch in
:meth:`FormatName.to_format` (mypy checks that every member has one).
"""

from __future__ import annotations

import sys
from enum import Enum

from leakaudit.registry import unknown_message
from leakaudit.report.formats.html import HtmlFormat
from leakaudit.report.formats.interface import ReportFormat
from leakaudit.report.formats.json_format import JsonFormat
from leakaudit.report.formats.junit import JunitFormat
from leakaudit.report.formats.markdown import MarkdownFormat
from leakaudit.report.formats.sarif import SarifFormat
from leakaudit.report.formats.table import TableFormat

if sys.version_info >= (3, 11):
    from typing import assert_never
else:  # pragma: no cover
    from typing_extensions import assert_never


class FormatName(str, Enum):
    """The report formats, by the name that selects them."""

    table = "table"
    md = "md"
    json = "json"
    sarif = "sarif"
    junit = "junit"
    html = "html"

    def to_format(self, top_k: int = 10) -> ReportFormat:
        """The format this name selects, showing ``top_k`` rows where it has a table."""
        if self is FormatName.table:
            return TableFormat(top_k)
        if self is FormatName.md:
            return MarkdownFormat(top_k)
        if self is FormatName.json:
            return JsonFormat(top_k)
        if self is FormatName.sarif:
            return SarifFormat(top_k)
        if self is FormatName.junit:
            return JunitFormat(top_k)
        if self is FormatName.html:
            return HtmlFormat(top_k)
        assert_never(self)  # a new member without a branch fails mypy here


def report_format(name: str, top_k: int = 10) -> ReportFormat:
    """The format called ``name`` (a :class:`FormatName` value).

    Raises:
        ValueError: an unknown name (the message lists the formats).
    """
    try:
        return FormatName(name).to_format(top_k)
    except ValueError:
        raise ValueError(unknown_message("format", name, (f.value for f in FormatName))) from None


__all__ = [
    "FormatName",
    "HtmlFormat",
    "JsonFormat",
    "JunitFormat",
    "MarkdownFormat",
    "ReportFormat",
    "SarifFormat",
    "TableFormat",
    "report_format",
]
