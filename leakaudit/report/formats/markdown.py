"""The markdown format: a summary for a CI job page (``$GITHUB_STEP_SUMMARY``)."""

from __future__ import annotations

from leakaudit.report.document import Report, SampleRecord
from leakaudit.report.escape import count, md_code
from leakaudit.report.formats.interface import ReportFormat
from leakaudit.report.ranking import QUANTILES
from leakaudit.scores.names import converged_key

#: Printed before a value whose solver did not meet its tolerance.
APPROX = "~"
#: The footnote that explains :data:`APPROX`.
APPROX_NOTE = (
    f"{APPROX} marks a value whose eigen- or linear solver did not converge for that sample: "
    "trust its order of magnitude, not its digits."
)


def fmt(value: float | int | None) -> str:
    """A number in 4 significant digits; ``–`` for missing values."""
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def fmt_score(sample: SampleRecord, name: str) -> str:
    """A sample's score, prefixed with :data:`APPROX` when its solver did not converge."""
    text = fmt(sample.scores.get(name))
    return APPROX + text if sample.diagnostics.get(converged_key(name)) is False else text


def any_approx(samples: list[SampleRecord], names: list[str]) -> bool:
    """Whether some shown cell is approximate (the table then needs :data:`APPROX_NOTE`)."""
    return any(s.diagnostics.get(converged_key(n)) is False for s in samples for n in names)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def render_markdown(report: Report, top_k: int = 10) -> str:
    """The report as GitHub-flavoured markdown: verdict, top-k table, distributions,
    the σ what-if, the gate's rules."""
    lines = [
        *_header(report),
        *_top_table(report, top_k),
        *_distributions(report),
        *_whatif(report),
        *_gate(report),
        *_footer(report),
    ]
    return "\n".join(lines)


def _header(report: Report) -> list[str]:
    if not report.gate.configured:
        verdict = "gate not configured"
    else:
        verdict = "✅ gate passed" if report.gate.passed else "❌ gate failed"
    ckpt = report.model.get("checkpoint") or {}
    return [
        f"## leakaudit scan: {verdict}",
        "",
        f"**Model** `{report.model.get('name')}` ({fmt(report.model.get('parameters'))} "
        f"parameters)"
        + (f", checkpoint sha256 `{ckpt['sha256'][:16]}…`" if ckpt else "")
        + f" · **Data** {report.dataset.get('kind')} {report.dataset.get('root') or ''} "
        f"({count(report.summary['num_samples'], 'sample')}) · "
        f"**Risk score** `{report.risk['score']}` "
        f"({report.risk['direction'].replace('_', ' ')})",
    ]


def psnr_cell(sample: SampleRecord) -> str:
    """``18.2 [15.0, 21.3]``: predicted PSNR (dB) and its interval."""
    iv = sample.psnr_interval_db
    text = fmt(sample.predicted_psnr_db)
    return text + (f" [{fmt(iv[0])}, {fmt(iv[1])}]" if iv else "")


def _top_table(report: Report, top_k: int) -> list[str]:
    names = list(report.summary["scores"])
    psnr = ["predicted PSNR dB"] if report.calibrated else []
    lines = [
        "",
        f"### Top {min(top_k, len(report.samples))} riskiest samples",
        "",
        f"_{report.ranking_basis()}_",
        "",
        _row(["rank", "sample", "label", "percentile", *psnr, *names]),
        _row(["---:", "---", "---:", "---:", *["---:"] * (len(psnr) + len(names))]),
    ]
    top = report.ranked()[:top_k]
    for s in top:
        cells = [str(s.rank), md_code(s.id), str(s.label), fmt(s.percentile)]
        cells += [psnr_cell(s)] if psnr else []
        lines.append(_row(cells + [fmt_score(s, n) for n in names]))
    if any_approx(top, names):
        lines += ["", APPROX_NOTE]
    return lines


def _distributions(report: Report) -> list[str]:
    qs = [f"q{round(q * 100):02d}" for q in QUANTILES]
    cols = ["min", *qs[:2], "median", *qs[2:], "max"]
    lines = ["", "### Score distributions", "", _row(["score", *cols])]
    lines.append(_row(["---", *["---:"] * len(cols)]))
    for name, st in report.summary["scores"].items():
        lines.append(_row([f"`{name}`", *(fmt(st[k]) for k in cols)]))
    return lines


def _whatif(report: Report) -> list[str]:
    w = report.whatif
    if not w.get("available"):
        return []
    return [
        "",
        "### Defence what-if",
        "",
        f"Gaussian σ for an I²F-predicted reconstruction error of τ = {fmt(w['target_error'])}"
        f": median sample {fmt(w['sigma_median'])}, whole dataset "
        f"**{fmt(w['sigma_dataset'])}**.",
    ]


def _gate(report: Report) -> list[str]:
    lines = ["", "### Gate", ""]
    g = report.gate
    if not g.configured:
        return [*lines, "Gate: not configured (no `gate.rules` or `--fail-on`)."]
    base = g.baseline
    lines += [_row(["rule", "risky", "fraction", *(["known", "fixed"] if base else []), "result"])]
    lines += [_row(["---", "---:", "---:", *(["---:", "---:"] if base else []), "---"])]
    for r in g.rules:
        verdict = "pass" if r.passed else "**fail**"
        risky = f"{r.risky}/{r.considered}" + (" new" if base else "")
        known = [str(len(r.known)), str(len(r.fixed))] if base else []
        lines.append(_row([r.describe(), risky, f"{r.fraction:.1%}", *known, verdict]))
    if base is not None:
        lines += [
            "",
            f"Compared with the baseline `{base['path']}` ({count(base['samples'], 'sample')}).",
        ]
    if g.expired_allowlist:
        names = ", ".join(md_code(e.get("id") or e.get("sha256", "")) for e in g.expired_allowlist)
        lines += ["", f"Expired allowlist entries (no longer suppress): {names}"]
    if report.gate.offending:
        shown = ", ".join(md_code(i) for i in report.gate.offending[:20])
        more = len(report.gate.offending) - 20
        lines += ["", f"Offending samples: {shown}" + (f" and {more} more" if more > 0 else "")]
    return lines


def _footer(report: Report) -> list[str]:
    summ = report.summary
    return [
        "",
        f"{count(summ['num_samples'], 'sample')} in {summ['seconds']:.1f} s on {summ['device']} "
        f"({summ['backend']})"
        + (f"; {len(summ['non_converged'])} not converged" if summ["non_converged"] else "")
        + f" · leakaudit {report.tool['version']}",
        *(["", note] if (note := report.computed_note()) is not None else []),
        "",
    ]


class MarkdownFormat(ReportFormat):
    """``md``: GitHub-flavoured markdown for a CI job summary (``$GITHUB_STEP_SUMMARY``)."""

    name = "md"
    extension = ".md"

    def render(self, report: Report) -> str:
        return render_markdown(report, self.top_k)
