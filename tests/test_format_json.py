"""The ``json`` format: the full document, strict JSON, as ``--json`` writes it."""

from __future__ import annotations

import io
import json

from rich.console import Console

from leakaudit.report.formats import FormatName, JsonFormat
from leakaudit.report.schema import schema_errors
from tests.test_report import hand_report


def test_json_format_renders_the_whole_report() -> None:
    report = hand_report()
    fmt = FormatName("json").to_format(top_k=1)
    assert isinstance(fmt, JsonFormat) and fmt.name == "json"
    text = fmt.render(report)
    assert text.endswith("\n") and "NaN" not in text
    doc = json.loads(text)
    assert schema_errors(doc) == []
    assert len(doc["samples"]) == len(report.samples)  # top_k does not cut the document
    console = Console(file=io.StringIO(), width=40)
    fmt.show(report, console)
    assert console.file.getvalue() == text  # type: ignore[attr-defined]  # never wrapped
