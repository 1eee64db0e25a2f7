"""The HTML format: one self-contained page to open in a browser or keep as a CI artifact.

The page holds the gate's verdict, the ranked table of the ``top_k`` riskiest samples, a
histogram per score (its riskier end labelled, gate thresholds dashed), and the inputs of
the ``top_k`` riskiest samples beside the ``top_k`` safest when the report carries them
(:attr:`Report.images <leakaudit.report.document.Report.images>`, filled by a scan asked
for them; a report read back from JSON or redacted has none, and the page says so).
Nothing is fetched: images are ``data:`` URIs, charts inline SVG, and the
Content-Security-Policy forbids scripts (:mod:`leakaudit.report.html_page`).
"""

from __future__ import annotations

from leakaudit.direction import Direction
from leakaudit.report.document import Report, SampleRecord
from leakaudit.report.escape import count
from leakaudit.report.formats.interface import ReportFormat
from leakaudit.report.formats.markdown import fmt, fmt_score, psnr_cell
from leakaudit.report.html_page import figure, image, page, table
from leakaudit.report.svg import esc, histogram_svg
from leakaudit.scores.names import SCORES
from leakaudit.scores.risk import resolve_risk


def score_directions(report: Report) -> dict[str, Direction]:
    """Each reported score's risk direction in this report's risk view: the configured
    overrides (``scores.directions``) over the shipped ones, and the ranking score's
    direction as the report records it."""
    names = [n for n in report.summary["scores"] if n in SCORES]
    overrides = (report.config.get("scores") or {}).get("directions") or {}
    directions = dict(resolve_risk(None, overrides, names).only(names)) if names else {}
    if report.risk.get("score") in report.summary["scores"]:
        directions[report.risk["score"]] = report.risk["direction"]
    return directions


def ends(report: Report, k: int) -> tuple[list[SampleRecord], list[SampleRecord]]:
    """The ``k`` riskiest samples (riskiest first) and the ``k`` safest of the rest with a
    finite risk value (safest first)."""
    ranked = report.ranked()
    risky = ranked[:k]
    rest = [s for s in ranked[k:] if s.percentile is not None]
    return risky, rest[::-1][:k]


def _verdict(report: Report) -> tuple[str, str]:
    if not report.gate.configured:
        return "gate not configured", "muted"
    return ("gate passed", "passed") if report.gate.passed else ("gate failed", "failed")


def _header(report: Report) -> list[str]:
    verdict, css = _verdict(report)
    ckpt = report.model.get("checkpoint") or {}
    way = report.risk["direction"].replace("_", " ")
    facts = (
        f"Model {report.model.get('name')} ({fmt(report.model.get('parameters'))} parameters)"
        + (f", checkpoint sha256 {str(ckpt.get('sha256', ''))[:16]}…" if ckpt else "")
        + f" · Data {report.dataset.get('kind')} {report.dataset.get('root') or ''} "
        f"({count(len(report.samples), 'sample')}) · Risk score {report.risk['score']} ({way})"
    )
    parts = [
        f'<h1>leakaudit scan: <span id="verdict" class="{css}">{esc(verdict)}</span></h1>',
        f"<p>{esc(facts)}</p>",
        f'<p class="muted">{esc(report.ranking_basis())}</p>',
    ]
    if report.warnings:
        items = "".join(f"<li>{esc(w)}</li>" for w in report.warnings)
        parts.append(f'<ul class="warnings">{items}</ul>')
    return parts


def _ranked(report: Report, top_k: int) -> list[str]:
    names = list(report.summary["scores"])
    psnr = ["predicted PSNR dB"] if report.calibrated else []
    top = report.ranked()[:top_k]
    rows = [
        [
            str(s.rank),
            f'<td class="id">{esc(s.id)}</td>',
            str(s.label),
            esc(fmt(s.percentile)),
            *([esc(psnr_cell(s))] if psnr else []),
            *(esc(fmt_score(s, n)) for n in names),
        ]
        for s in top
    ]
    headers = ["rank", "sample", "label", "percentile", *psnr, *names]
    return [
        f"<h2>Top {len(top)} riskiest samples</h2>",
        table(headers, rows, id="ranked"),
        '<p class="muted">~ marks a value whose solver did not converge.</p>',
    ]


def _histograms(report: Report) -> list[str]:
    directions = score_directions(report)
    charts = []
    for name in report.summary["scores"]:
        if name not in directions:
            continue
        marks = [(r.threshold, r.describe()) for r in report.gate.rules if r.score == name]
        values = [s.scores.get(name) for s in report.samples]
        charts.append(histogram_svg(values, name=name, riskier=directions[name], marks=marks))
    return [
        "<h2>Score distributions</h2>",
        '<p class="muted">One histogram per score; the red label marks the riskier end, '
        "dashed lines the gate's thresholds.</p>",
        '<div class="charts" id="histograms">' + "".join(charts) + "</div>",
    ]


def _grid(report: Report, samples: list[SampleRecord], which: str) -> str:
    cells = []
    for s in samples:
        png = report.images.get(s.index)
        if png is not None:
            alt = f"sample {s.id}"
            cells.append(figure(image(png, alt, data_rank=str(s.rank)), f"#{s.rank} · {s.id}"))
    grid = f'<div class="grid" id="{which.split()[0]}">' + "".join(cells) + "</div>"
    return f"<div><h3>{esc(which)}</h3>{grid}</div>"


def _inputs(report: Report, top_k: int) -> list[str]:
    title = "<h2>Riskiest and safest inputs</h2>"
    if not report.images:
        why = (
            "the report is redacted"
            if report.paths.get("redacted")
            else "this report carries no pixels (it was read back from JSON, or the scan "
            "was not asked for them)"
        )
        return [title, f'<p class="absent">Images absent: {esc(why)}.</p>']
    risky, safe = ends(report, top_k)
    return [
        title,
        f'<p class="muted">Inputs as scanned, ranked by {esc(report.risk["score"])}.</p>',
        '<div class="ends">'
        + _grid(report, risky, "riskiest first")
        + _grid(report, safe, "safest first")
        + "</div>",
    ]


def _gate(report: Report) -> list[str]:
    g = report.gate
    if not g.configured:
        return ["<h2>Gate</h2>", "<p>Gate: not configured (no gate.rules or --fail-on).</p>"]
    rows = [
        [
            f'<td class="id">{esc(r.describe())}</td>',
            f"{r.risky}/{r.considered}",
            f"{r.fraction:.1%}",
            "pass" if r.passed else '<b class="failed">fail</b>',
        ]
        for r in g.rules
    ]
    parts = ["<h2>Gate</h2>", table(["rule", "risky", "fraction", "result"], rows, id="gate")]
    if g.offending:
        shown = ", ".join(esc(i) for i in g.offending[:20])
        more = len(g.offending) - 20
        tail = f" and {more} more" if more > 0 else ""
        parts.append(f'<p class="offending">Offending samples: {shown}{tail}</p>')
    return parts


def render_html(report: Report, top_k: int = 10) -> str:
    """The report as one self-contained HTML page (see the module docs)."""
    summ = report.summary
    footer = (
        f"{count(summ['num_samples'], 'sample')} in {summ['seconds']:.1f} s on "
        f"{summ['device']} · leakaudit {report.tool['version']} · {report.created}"
    )
    body = [
        *_header(report),
        *_ranked(report, top_k),
        *_histograms(report),
        *_inputs(report, top_k),
        *_gate(report),
        f'<p class="muted">{esc(footer)}</p>',
    ]
    return page(f"leakaudit scan: {_verdict(report)[0]}", body)


class HtmlFormat(ReportFormat):
    """``html``: one self-contained page (tables, inline SVG charts, embedded images)."""

    name = "html"
    extension = ".html"

    def render(self, report: Report) -> str:
        return render_html(report, self.top_k)
