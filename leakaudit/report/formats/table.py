"""The terminal format: a rich table of the riskiest samples, then a summary."""

from __future__ import annotations

import io

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from leakaudit.report.document import Report
from leakaudit.report.escape import count, printable, terminal_text
from leakaudit.report.formats.interface import ReportFormat
from leakaudit.report.formats.markdown import APPROX_NOTE, any_approx, fmt, fmt_score, psnr_cell

#: Columns a narrow terminal keeps besides the risk score.
COMPACT_SCORES = ("grad_norm", "i2f")

#: Terminal width below which the table shows the compact score set.
COMPACT_BELOW = 150


def table_scores(report: Report, width: int | None) -> list[str]:
    """The scores shown: all, or on a terminal narrower than :data:`COMPACT_BELOW` the risk
    score and :data:`COMPACT_SCORES` (the JSON report always has every score)."""
    names = list(report.summary["scores"])
    if width is None or width >= COMPACT_BELOW:
        return names
    keep = {report.risk["score"], *COMPACT_SCORES}
    return [n for n in names if n in keep]


def top_table(report: Report, top_k: int, width: int | None = None) -> Table:
    """Rank, sample id, label, percentile and the scores of the ``top_k`` riskiest."""
    names = table_scores(report, width)
    arrow = "↓" if report.risk["direction"] == "lower_is_riskier" else "↑"
    hidden = len(report.summary["scores"]) - len(names)
    table = Table(
        title=f"Top {min(top_k, len(report.samples))} riskiest samples "
        f"(risk score {report.risk['score']} {arrow} riskier)"
        + (f"; {hidden} more scores in the JSON report" if hidden else ""),
        title_justify="left",
    )
    table.add_column("rank", justify="right")
    table.add_column("sample")
    table.add_column("label", justify="right")
    table.add_column("pct", justify="right")
    if report.calibrated:
        table.add_column("PSNR dB", justify="right", style="bold")
    for n in names:
        table.add_column(n, justify="right", style="bold" if n == report.risk["score"] else "")
    top = report.ranked()[:top_k]
    for s in top:
        cells = [str(s.rank), terminal_text(s.id), str(s.label), fmt(s.percentile)]
        if report.calibrated:
            cells.append(psnr_cell(s))
        table.add_row(*cells, *(fmt_score(s, n) for n in names))
    notes = [report.ranking_basis()] + ([APPROX_NOTE] if any_approx(top, names) else [])
    table.caption = "\n".join(notes)
    table.caption_justify = "left"
    return table


def distribution_table(report: Report) -> Table:
    """min / median / max and the 5%/95% quantiles of each score."""
    table = Table(title="Score distributions", title_justify="left")
    for col in ("score", "min", "q05", "median", "q95", "max"):
        table.add_column(col, justify="left" if col == "score" else "right")
    for name, st in report.summary["scores"].items():
        table.add_row(name, *(fmt(st[k]) for k in ("min", "q05", "median", "q95", "max")))
    return table


def summary_text(report: Report) -> Text:
    """Device, time, convergence, the σ what-if and the gate verdict, a line each."""
    s, w, g = report.summary, report.whatif, report.gate
    rate = s.get("samples_per_second")
    lines = [
        f"{count(s['num_samples'], 'sample')} · {s['seconds']:.1f} s"
        + (f" ({rate:.1f} samples/s)" if rate else "")
        + f" · {s['device']} · {s['backend']} · {s['dtype']}",
    ]
    if s["resumed_samples"]:
        lines.append(f"resumed: {count(s['resumed_samples'], 'sample')} from partial results")
    if s["non_converged"]:
        bad = s["non_converged"]
        lines.append(f"not converged: {len(bad)} ({', '.join(map(printable, bad[:5]))})")
    if w.get("available"):
        lines.append(
            f"σ what-if (τ = {fmt(w['target_error'])}): median sample {fmt(w['sigma_median'])},"
            f" whole dataset {fmt(w['sigma_dataset'])}"
        )
    if g.baseline is not None:
        lines.append(f"baseline: {g.baseline['path']} ({count(g.baseline['samples'], 'sample')})")
    for r in g.rules:
        compared = f" new ({len(r.known)} known, {len(r.fixed)} fixed)" if g.baseline else ""
        lines.append(
            f"gate rule {r.describe()}: {r.risky}/{r.considered} risky{compared} → "
            + ("pass" if r.passed else "FAIL")
        )
    for entry in g.expired_allowlist:
        lines.append(f"expired allowlist entry: {entry.get('id') or entry.get('sha256')}")
    note = report.computed_note()
    if note is not None:
        lines.append(note)
    text = Text("\n".join(lines))
    text.append("\ngate: ")
    if not g.configured:
        text.append("not configured (no gate.rules or --fail-on)")
        return text
    text.append("passed" if g.passed else "failed", style="green" if g.passed else "bold red")
    return text


def render_terminal(report: Report, top_k: int = 10, width: int | None = None) -> RenderableType:
    """Everything the terminal shows, as one rich renderable (compact below ``width``
    :data:`COMPACT_BELOW`; ``None``: every score)."""
    return Group(top_table(report, top_k, width), distribution_table(report), summary_text(report))


class TableFormat(ReportFormat):
    """``table``: rich tables of the riskiest samples and the score distributions, then a
    summary; on a narrow console the table keeps the compact score set."""

    name = "table"
    extension = ".txt"

    def render(self, report: Report) -> str:
        """Plain text (no colours), every score shown."""
        console = Console(file=io.StringIO(), highlight=False, soft_wrap=True, color_system=None)
        with console.capture() as cap:
            console.print(render_terminal(report, self.top_k))
        return cap.get()

    def show(self, report: Report, console: Console) -> None:
        console.print(render_terminal(report, self.top_k, console.width), soft_wrap=False)
