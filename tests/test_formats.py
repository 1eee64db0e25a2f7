"""Every format name maps to one :class:`ReportFormat` of that name (exhaustively), and a
bad name lists the formats."""

from __future__ import annotations

import pytest

from leakaudit.report.formats import FormatName, ReportFormat, report_format
from tests.test_report import hand_report


@pytest.mark.parametrize("name", list(FormatName))
def test_each_name_maps_to_its_format(name: FormatName) -> None:
    fmt = name.to_format(top_k=3)
    assert isinstance(fmt, ReportFormat)
    assert fmt.name == name.value and fmt.top_k == 3
    assert type(report_format(name.value)) is type(fmt)
    assert fmt.render(hand_report()).endswith("\n")


def test_unknown_format_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="choose from: table, md, json, sarif, junit, html"):
        report_format("pdf")
