"""Writing a finished report: the JSON file, then the ``--format`` rendering to
``--output``, stdout, or stderr when stdout carries the JSON."""

from __future__ import annotations

from leakaudit.cli.console import stderr_console, stdout_console
from leakaudit.config import ScanConfig
from leakaudit.report.document import Report
from leakaudit.report.files import write_atomic
from leakaudit.report.formats import FormatName, JsonFormat


def write_outputs(report: Report, cfg: ScanConfig) -> None:
    """JSON to ``output.json``; the ``output.format`` rendering to ``output.output`` or
    the console (stderr when stdout carries the JSON; nothing more when that JSON is
    already the requested format)."""
    out = cfg.output
    if out.json == "-":
        stdout_console().out(JsonFormat().render(report), end="", highlight=False)
    elif out.json:
        write_atomic(out.json, JsonFormat().render(report))
    fmt = FormatName(out.format).to_format(out.top_k)
    if out.output and out.output != "-":
        write_atomic(out.output, fmt.render(report))
    elif not (out.json == "-" and fmt.name == JsonFormat.name):
        fmt.show(report, stderr_console() if out.json == "-" else stdout_console())
