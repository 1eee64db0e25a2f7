"""The shell of a self-contained HTML report: one page with its style inline, images as
``data:`` URIs and charts as inline SVG, under a Content-Security-Policy that loads
nothing from outside and runs no script.

Every string that comes from the data (sample ids, paths, warnings) is escaped with
:func:`~leakaudit.report.svg.esc` before it reaches the page (docs/security.md).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

from leakaudit.report.png import data_uri
from leakaudit.report.svg import esc

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
table { border-collapse: collapse; font-size: 13px; margin-bottom: 12px; }
table.grid-table td { text-align: center; } table.grid-table figure { margin: 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f0f0f0; } td.id, th.id { text-align: left; font-family: monospace; }
.passed { color: #1b7f3b; } .failed { color: #b00020; } .muted { color: #666; }
.charts { display: flex; flex-wrap: wrap; gap: 10px; }
.grid { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; }
.grid figure { margin: 0; text-align: center; font-size: 11px; width: 96px; }
.grid figcaption { overflow-wrap: anywhere; }
img.thumb { width: 80px; height: 80px; image-rendering: pixelated; border: 1px solid #999; }
.ends { display: flex; gap: 40px; flex-wrap: wrap; }
""".strip()


def csp(style: str = STYLE) -> str:
    """The page's policy: nothing is fetched or run; images only from ``data:`` URIs; the
    one inline style element allowed by its SHA-256."""
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode("ascii")
    return (
        "default-src 'none'; img-src data:; "
        f"style-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )


def page(title: str, body: Sequence[str]) -> str:
    """A complete HTML document titled ``title`` (escaped here) around ``body`` (HTML)."""
    head = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{csp()}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
    )
    return head + "\n".join(body) + "\n</body>\n</html>\n"


def attributes(**attrs: str) -> str:
    """`` name="value"`` pairs, values escaped; ``class_`` → ``class``, ``data_rank`` →
    ``data-rank``."""
    return "".join(f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"' for k, v in attrs.items())


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], **attrs: str) -> str:
    """A ``<table>``: ``headers`` are escaped here; ``rows`` are cells of ready HTML (escape
    data with :func:`esc`). A cell starting with ``<td`` is used as is, else wrapped."""
    attr = attributes(**attrs)
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = [
        "<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row) + "</tr>"
        for row in rows
    ]
    rows_html = "".join(body)
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>"


def image(png: bytes, alt: str, **attrs: str) -> str:
    """An ``<img class="thumb">`` showing ``png`` from a ``data:`` URI; ``alt`` is escaped."""
    attr = attributes(**attrs)
    return f'<img class="thumb" src="{data_uri(png)}" alt="{esc(alt)}"{attr}>'


def figure(inner: str, caption: str) -> str:
    """``<figure>`` around ``inner`` (HTML) with an escaped ``caption``."""
    return f"<figure>{inner}<figcaption>{esc(caption)}</figcaption></figure>"
