"""The JSON format: the full versioned report."""

from __future__ import annotations

import json

from leakaudit.report.document import Report


def render_json(report: Report) -> str:
    """The report as strict JSON text (no NaN), indented, ending in a newline."""
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
