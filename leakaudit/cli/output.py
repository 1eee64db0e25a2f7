"""Writing a finished report: JSON file, the ``--format`` rendering, stdout or stderr."""

from __future__ import annotations

from leakaudit.cli.console import stderr_console, stdout_console
from leakaudit.config import ScanConfig
from leakaudit.report.document import Report
from leakaudit.report.files import write_atomic
from leakaudit.report.json_out import render_json
from leakaudit.report.markdown import render_markdown
from leakaudit.report.terminal import render_terminal


def _emit(text: str, path: str | None, to_stderr: bool) -> None:
    if path and path != "-":
        write_atomic(path, text)
    elif to_stderr:
        stderr_console().out(text, end="", highlight=False)
    else:
        stdout_console().out(text, end="", highlight=False)


def write_outputs(report: Report, cfg: ScanConfig) -> None:
    """JSON to ``output.json``; the ``output.format`` rendering to ``output.output`` or
    stdout (stderr when stdout carries the JSON)."""
    out = cfg.output
    stdout_taken = out.json == "-"
    if out.json:
        _emit(render_json(report), out.json, to_stderr=False)
    if out.format == "json":
        if out.json != "-" or out.output:
            _emit(render_json(report), out.output, to_stderr=False)
    elif out.format == "md":
        _emit(render_markdown(report, out.top_k), out.output, to_stderr=stdout_taken)
    elif out.output and out.output != "-":
        console = stdout_console()
        with console.capture() as cap:
            console.print(render_terminal(report, out.top_k))
        write_atomic(out.output, cap.get())
    else:
        console = stderr_console() if stdout_taken else stdout_console()
        console.print(render_terminal(report, out.top_k, console.width))
