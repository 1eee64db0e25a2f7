"""The JSON format: the full versioned report (docs/report-schema.md)."""

from __future__ import annotations

import json

from leakaudit.report.document import Report
from leakaudit.report.formats.interface import ReportFormat


def render_json(report: Report) -> str:
    """The report as strict JSON text (no NaN), indented, ending in a newline."""
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


class JsonFormat(ReportFormat):
    """``json``: what ``--json`` writes (every sample and score; ``top_k`` is ignored)."""

    name = "json"
    extension = ".json"

    def render(self, report: Report) -> str:
        return render_json(report)
