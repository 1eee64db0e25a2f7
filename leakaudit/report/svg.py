"""Inline SVG charts for the HTML reports: a histogram of a score and a scatter of a score
against PSNR, written as text (no plotting library at run time). Every label is escaped;
the charts use presentation attributes only, so a strict Content-Security-Policy that
allows no inline style attributes still draws them. They are for inline use in an HTML
page (whose parser puts ``<svg>`` in the SVG namespace, so no ``xmlns`` is written).

Which end of a score is riskier is the caller's (the run's risk view): a chart only
writes it on the x axis (``riskier →`` or ``← riskier``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from leakaudit.direction import Direction, sign
from leakaudit.report.escape import printable

#: Chart size and margins, in SVG user units (pixels at 100 % zoom).
WIDTH, HEIGHT = 380, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 14, 26, 44

#: A score axis turns logarithmic when its positive values span more than this ratio.
LOG_SPREAD = 100.0


def esc(value: object) -> str:
    """Untrusted text for HTML or SVG content and attributes: control and bidi characters
    shown escaped (:func:`~leakaudit.report.escape.printable`), then HTML-escaped."""
    return html.escape(printable(str(value)), quote=True)


def finite(values: Sequence[float | None] | np.ndarray) -> np.ndarray:
    """The finite values as float64 (``None`` and non-finite values dropped)."""
    a = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return a[np.isfinite(a)]


@dataclass(frozen=True)
class Axis:
    """A value range mapped onto pixels ``[a, b]``; ``log``: the range is of log10 values."""

    lo: float
    hi: float
    a: float
    b: float
    log: bool = False

    @classmethod
    def fit(cls, values: np.ndarray, a: float, b: float, *, log: bool = False) -> Axis:
        """An axis over finite ``values`` (log10 of them when ``log``), padded 4 %."""
        v = np.log10(values) if log else values
        lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
        pad = (hi - lo) * 0.04 if hi > lo else max(abs(lo) * 0.1, 0.5)
        return cls(lo - pad, hi + pad, a, b, log)

    def px(self, value: float) -> float:
        """The pixel of ``value`` (a raw value; its log10 is taken on a log axis)."""
        return self.at(math.log10(value) if self.log else value)

    def ticks(self, n: int = 5) -> list[tuple[float, str]]:
        """About ``n`` ticks, ``(pixel, label)``: the powers of ten in range on a log axis
        that has two or more, else ``n`` evenly spaced values."""
        if self.log:
            powers = list(range(math.ceil(self.lo), math.floor(self.hi) + 1))
            if len(powers) >= 2:
                step = math.ceil(len(powers) / n)
                return [(self.at(p), f"1e{p}") for p in powers[::step]]
        values = [self.lo + (self.hi - self.lo) * i / (n - 1) for i in range(n)]
        return [(self.at(v), f"{10**v:.2g}" if self.log else f"{v:.3g}") for v in values]

    def at(self, v: float) -> float:
        """The pixel of ``v`` in axis units (log10 of the value on a log axis)."""
        return self.a + (v - self.lo) / (self.hi - self.lo) * (self.b - self.a)


def log_axis(values: np.ndarray) -> bool:
    """Whether finite ``values`` are all positive and spread over more than
    :data:`LOG_SPREAD`."""
    return bool(values.size and values.min() > 0 and values.max() / values.min() > LOG_SPREAD)


def _frame(title: str, kind: str, name: str, body: list[str]) -> str:
    return (
        f'<svg class="{kind}" data-score="{esc(name)}" '
        f'width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{esc(title)}"><title>{esc(title)}</title>'
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>'
        f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" font-size="12" '
        f'font-weight="bold">{esc(title)}</text>' + "".join(body) + "</svg>"
    )


def _x_axis(axis: Axis, label: str, riskier: Direction) -> list[str]:
    y0 = HEIGHT - BOTTOM
    parts = [f'<line x1="{LEFT}" y1="{y0}" x2="{WIDTH - RIGHT}" y2="{y0}" stroke="#333"/>']
    for px, tick in axis.ticks():
        parts.append(f'<line x1="{px:.1f}" y1="{y0}" x2="{px:.1f}" y2="{y0 + 4}" stroke="#333"/>')
        parts.append(
            f'<text x="{px:.1f}" y="{y0 + 14}" text-anchor="middle" font-size="9">{tick}</text>'
        )
    higher = sign(riskier) > 0
    arrow = "riskier →" if higher else "← riskier"
    x, anchor = (WIDTH - RIGHT, "end") if higher else (LEFT, "start")
    parts.append(
        f'<text class="riskier" data-riskier="{"higher" if higher else "lower"}" x="{x}" '
        f'y="{HEIGHT - 6}" text-anchor="{anchor}" font-size="10" fill="#b00020">{arrow}</text>'
    )
    scale = " (log scale)" if axis.log else ""
    parts.append(
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 6}" text-anchor="middle" '
        f'font-size="10">{esc(label)}{scale}</text>'
    )
    return parts


def _y_axis(axis: Axis, label: str, ticks: list[tuple[float, str]] | None = None) -> list[str]:
    parts = [f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" stroke="#333"/>']
    for py, tick in axis.ticks(4) if ticks is None else ticks:
        parts.append(
            f'<text x="{LEFT - 4}" y="{py + 3:.1f}" text-anchor="end" font-size="9">{tick}</text>'
        )
    parts.append(
        f'<text x="12" y="{(TOP + HEIGHT - BOTTOM) / 2}" font-size="10" text-anchor="middle" '
        f'transform="rotate(-90 12 {(TOP + HEIGHT - BOTTOM) / 2})">{esc(label)}</text>'
    )
    return parts


def histogram_svg(
    values: Sequence[float | None],
    *,
    name: str,
    riskier: Direction,
    marks: Sequence[tuple[float, str]] = (),
    bins: int = 20,
) -> str:
    """A histogram of one score's values as an ``<svg class="histogram">``.

    Args:
        values: ``[N]`` values; missing and non-finite ones are counted in the title only.
        name: the score (title, x label and ``data-score``).
        riskier: the score's risk direction in this run (labels the x axis).
        marks: ``(value, label)`` vertical dashed lines, e.g. gate thresholds.
        bins: number of equal-width bins (in log10 space on a log axis).
    """
    v = finite(values)
    missing = len(values) - v.size
    title = name + (f" ({missing} not finite)" if missing else "")
    if v.size == 0:
        middle = f'x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle"'
        body = [f"<text {middle}>no finite values</text>"]
        return _frame(title, "histogram", name, body)
    log = log_axis(v)
    shown = [(m, label) for m, label in marks if math.isfinite(m) and (m > 0 or not log)]
    x = Axis.fit(np.concatenate([v, [m for m, _ in shown]]), LEFT, WIDTH - RIGHT, log=log)
    counts, edges = np.histogram(np.log10(v) if log else v, bins=bins, range=(x.lo, x.hi))
    top_count = int(counts.max())
    y = Axis(0.0, top_count * 1.1, HEIGHT - BOTTOM, TOP)
    body = []
    for c, e0, e1 in zip(counts, edges[:-1], edges[1:]):
        if c:
            p0, p1 = x.at(float(e0)), x.at(float(e1))
            top = y.px(float(c))
            body.append(
                f'<rect class="bar" x="{p0:.1f}" y="{top:.1f}" width="{max(p1 - p0 - 1, 1):.1f}" '
                f'height="{y.a - top:.1f}" fill="#4a78b5"><title>{int(c)}</title></rect>'
            )
    for value, label in shown:
        px = x.px(value)
        body.append(
            f'<line class="mark" x1="{px:.1f}" y1="{TOP}" x2="{px:.1f}" y2="{HEIGHT - BOTTOM}" '
            f'stroke="#b00020" stroke-dasharray="4 3"><title>{esc(label)}</title></line>'
        )
    step = max(1, math.ceil(top_count / 4))
    counts_ticks = [(y.px(float(c)), str(c)) for c in range(0, top_count + 1, step)]
    body += _x_axis(x, name, riskier) + _y_axis(y, "samples", counts_ticks)
    return _frame(title, "histogram", name, body)


def _bands(y: Axis, bands: Sequence[float]) -> list[str]:
    parts = []
    for b in bands:
        py = y.px(b)
        parts.append(
            f'<line class="band" data-db="{b:g}" x1="{LEFT}" y1="{py:.1f}" x2="{WIDTH - RIGHT}" '
            f'y2="{py:.1f}" stroke="#888" stroke-dasharray="6 3"/>'
            f'<text x="{WIDTH - RIGHT - 2}" y="{py - 3:.1f}" text-anchor="end" font-size="9" '
            f'fill="#555">{b:g} dB</text>'
        )
    return parts


def scatter_svg(
    scores: Sequence[float],
    psnr: Sequence[float],
    *,
    name: str,
    title: str,
    riskier: Direction,
    labels: Sequence[str],
    bands: Sequence[float] = (),
) -> str:
    """A score (x) against the PSNR an attack reached (y), as an ``<svg class="scatter">``.

    Args:
        scores: ``[n]`` score values; points with a non-finite score or PSNR are left out.
        psnr: ``[n]`` PSNR in dB, same order.
        name: the score (x label and ``data-score``).
        title: the chart's title (e.g. the attack and Spearman ρ).
        riskier: the score's risk direction in this run (labels the x axis).
        labels: ``[n]`` point tooltips (sample ids).
        bands: PSNR levels (dB) drawn as horizontal dashed lines, always in view.
    """
    xs, ys = np.asarray(scores, dtype=np.float64), np.asarray(psnr, dtype=np.float64)
    ok = np.isfinite(xs) & np.isfinite(ys)
    log = log_axis(xs[ok])
    if log:
        ok &= xs > 0
    x = Axis.fit(xs[ok], LEFT, WIDTH - RIGHT, log=log)
    levels = np.asarray(bands, dtype=np.float64)
    y = Axis.fit(np.concatenate([ys[ok], levels]), HEIGHT - BOTTOM, TOP)
    body = _bands(y, bands)
    n = max(len(xs) - 1, 1)
    for j in np.flatnonzero(ok).tolist():
        red = int(200 * (1 - j / n))  # samples come riskiest first: red → blue
        body.append(
            f'<circle class="point" cx="{x.px(float(xs[j])):.1f}" cy="{y.px(float(ys[j])):.1f}" '
            f'r="3.5" fill="rgb({red},60,{200 - red})"><title>{esc(labels[j])}: '
            f"{ys[j]:.1f} dB</title></circle>"
        )
    body += _x_axis(x, name, riskier) + _y_axis(y, "PSNR (dB)")
    return _frame(title, "scatter", name, body)
