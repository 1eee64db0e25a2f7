"""The ``html`` format and ``validate --html``: one self-contained page, parsed here with
the standard library's HTML parser; pixels checked against Pillow's PNG decoder and the
scikit-learn digits they came from. tests/test_format_html_browser.py loads the same
page in a real browser."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from leakaudit.cli import app
from leakaudit.report.formats import FormatName, HtmlFormat
from leakaudit.report.formats.html import ends
from leakaudit.report.png import encode_png, image_png
from leakaudit.report.validation_html import PSNR_BANDS_DB
from tests.helpers_cli import assert_refused
from tests.helpers_io import astronaut_patches, digit_images
from tests.test_report import hand_report

#: The demo, ten samples, cheap solvers (the scores' values do not matter here).
DEMO = ["scan", "--demo", "--first", "1200", "--per-class", "1", "--max-iter", "4",
        "--n-probes", "1", "--no-progress"]  # fmt: skip
HOSTILE = "<img src=x onerror=alert(1)>"


class Page(HTMLParser):
    """Every element's tag and attributes, the rows of each table (cell texts) by id,
    and all text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.text: list[str] = []
        self._table: str | None = None
        self._in_body = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.elements.append((tag, a))
        if tag == "table":
            self._table = a.get("id", f"table{len(self.tables)}")
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table:
            self.tables[self._table].append([])
        elif tag == "td" and self._in_body and self._table:
            self.tables[self._table][-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table, self._in_body = None, False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_body and self._table and self.tables[self._table]:
            row = self.tables[self._table][-1]
            if row:
                row[-1] += data

    def all(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        """Elements ``tag`` with these attributes (``class_`` → ``class``, ``_`` → ``-``)."""
        want = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}
        return [
            a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in want.items())
        ]


def decode(src: str) -> np.ndarray:
    """The pixels of a ``data:image/png;base64`` URI, decoded by Pillow."""
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src[len(prefix) :]))))


def assert_self_contained(text: str) -> None:
    """Nothing is fetched or run: no URL, every ``src``/``href`` an embedded PNG, no
    element that loads or runs anything."""
    assert "http://" not in text and "https://" not in text and 'src="//' not in text
    page = Page(text)
    links = [v for _, a in page.elements for k, v in a.items() if k in ("src", "href")]
    assert all(v.startswith("data:image/png;base64,") for v in links)
    loaders = {"script", "link", "iframe", "object", "embed", "base", "frame", "use"}
    assert not [t for t, _ in page.elements if t in loaders]
    assert not [k for _, a in page.elements for k in a if k.startswith("on")]


def scan_demo_html(where: Path, *extra: str) -> tuple[str, dict[str, Any]]:
    """The HTML page and the JSON report of one CLI scan of the demo."""
    out, js = where / "report.html", where / "report.json"
    args = [*DEMO, "--format", "html", "-o", str(out), "--json", str(js), *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8"), json.loads(js.read_text())


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    """A folder with ``report.html`` and ``report.json`` of the demo (top 3)."""
    torch.set_num_threads(1)
    where = tmp_path_factory.mktemp("html")
    scan_demo_html(where, "--top-k", "3")
    return where


@pytest.fixture(scope="module")
def demo(demo_dir) -> tuple[str, dict[str, Any]]:
    text = (demo_dir / "report.html").read_text(encoding="utf-8")
    return text, json.loads((demo_dir / "report.json").read_text())


# --- PNG ---------------------------------------------------------------------------


def test_png_decodes_to_the_same_pixels_grey_and_rgb() -> None:
    digits, _ = digit_images(3)
    for img in [(digits[k] * 15).astype(np.uint8) for k in range(3)] + list(astronaut_patches(2)):
        png = encode_png(img)
        decoded = Image.open(io.BytesIO(png))
        decoded.load()  # checks every chunk's CRC and the zlib stream
        assert decoded.mode == ("L" if img.ndim == 2 else "RGB")
        np.testing.assert_array_equal(np.asarray(decoded), img)


def test_image_png_scales_clips_and_keeps_channel_order() -> None:
    x = torch.tensor([[[0.0, 0.5, 1.0, 1.7], [-0.2, float("nan"), 0.25, 0.75]]])
    got = np.asarray(Image.open(io.BytesIO(image_png(x))))
    np.testing.assert_array_equal(got, [[0, 128, 255, 255], [0, 0, 64, 191]])
    patch = astronaut_patches(1)[0]  # [H, W, 3] uint8
    rgb = torch.tensor(patch / 255.0).permute(2, 0, 1)  # [3, H, W] in [0, 1]
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(image_png(rgb)))), patch)
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((2, 2), dtype=np.float32))


# --- the scan page -----------------------------------------------------------------


def test_page_from_a_report_without_pixels_has_table_histograms_and_says_images_absent() -> None:
    report = hand_report()
    text = FormatName("html").to_format(top_k=2).render(report)
    page = Page(text)
    assert_self_contained(text)
    rows = page.tables["ranked"]
    # lavp_gm ranks the hand report, lower is riskier: the two smallest values lead.
    finite = [s for s in report.samples if s.scores["lavp_gm"] is not None]
    expected = sorted(finite, key=lambda s: s.scores["lavp_gm"])[:2]
    assert [r[1] for r in rows] == [s.id for s in expected]
    assert [r[0] for r in rows] == ["1", "2"]
    charts = page.all("svg", class_="histogram")
    assert [c["data-score"] for c in charts] == list(report.summary["scores"])
    assert page.all("img") == []
    assert "Images absent" in "".join(page.text)


def test_riskier_end_comes_from_the_reports_risk_view() -> None:
    overrides = {"grad_norm": "lower_is_riskier", "lavp_gm": "higher_is_riskier"}
    scores = {"select": ["grad_norm", "lavp_gm", "i2f"], "risk_score": "lavp_gm"}
    shipped = Page(HtmlFormat().render(hand_report()))
    flipped = Page(HtmlFormat().render(hand_report(scores={**scores, "directions": overrides})))
    labels = {
        name: [a["data-riskier"] for a in page.all("text", class_="riskier")]
        for name, page in (("shipped", shipped), ("flipped", flipped))
    }
    # score order grad_norm, lavp_gm, i2f; shipped: higher, lower, lower (SPEC directions)
    assert labels["shipped"] == ["higher", "lower", "lower"]
    assert labels["flipped"] == ["lower", "higher", "lower"]


def test_gate_threshold_is_drawn_on_its_scores_histogram() -> None:
    report = hand_report(gate={"rules": [{"score": "i2f", "threshold": 0.5}]})
    text = HtmlFormat().render(report)
    assert text.count('class="mark"') == 1
    i2f_chart = text[text.index('data-score="i2f"') :]
    assert 'class="mark"' in i2f_chart.split("</svg>")[0]
    assert Page(text).tables["gate"][0][0] == report.gate.rules[0].describe()


#: The hostile id as the page must show it (the ESC escaped, the rest as typed).
HOSTILE_SHOWN = HOSTILE + '"><script>alert(2)</script>\\x1b[31m'


def hostile_page() -> str:
    """The hand report's page with markup in the riskiest sample's id (which also offends
    the gate) and in a warning; that sample's input is embedded."""
    report = hand_report(gate={"rules": [{"score": "lavp_gm", "threshold": 1e9}]})
    first = report.ranked()[0]
    first.id = HOSTILE + '"><script>alert(2)</script>\x1b[31m'
    report.gate = dataclasses.replace(report.gate, offending=[first.id])
    report.warnings.append("</p><iframe src=//evil.example></iframe>")
    x = torch.tensor(digit_images(1)[0][0] / 16.0, dtype=torch.float32)[None]
    report.images = {first.index: image_png(x)}
    return HtmlFormat(top_k=3).render(report)


def test_hostile_ids_and_warnings_are_text_not_markup() -> None:
    text = hostile_page()
    page = Page(text)
    assert_self_contained(text)
    imgs = page.all("img")
    assert len(imgs) == 1 and imgs[0]["data-rank"] == "1"
    shown = "".join(page.text)
    assert HOSTILE in shown and "\\x1b[31m" in shown and "\x1b" not in text
    assert page.tables["ranked"][0][1] == HOSTILE_SHOWN


def test_policy_forbids_scripts_and_allows_only_the_pages_own_style() -> None:
    text = HtmlFormat().render(hand_report())
    policy = Page(text).all("meta", http_equiv="Content-Security-Policy")[0]["content"]
    style = text.split("<style>")[1].split("</style>")[0]
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert f"style-src 'sha256-{digest}'" in policy and "img-src data:" in policy


def test_demo_page_shows_the_riskiest_and_safest_digits_as_scanned(demo) -> None:
    text, report = demo
    page = Page(text)
    assert_self_contained(text)
    ranked = sorted(report["samples"], key=lambda s: s["rank"])
    assert [r[1] for r in page.tables["ranked"]] == [s["id"] for s in ranked[:3]]
    assert len(page.all("svg", class_="histogram")) == len(report["summary"]["scores"])
    imgs = page.all("img")
    assert [int(a["data-rank"]) for a in imgs] == [1, 2, 3, 10, 9, 8]
    digits = load_digits().images
    by_rank = {s["rank"]: s for s in ranked}
    for a in imgs:
        position = int(by_rank[int(a["data-rank"])]["id"].split(":")[1])
        expected = np.rint(digits[position] / 16.0 * 255.0).astype(np.uint8)
        np.testing.assert_array_equal(decode(a["src"]), expected)


def test_redacted_scan_embeds_no_pixels(tmp_path) -> None:
    text, _ = scan_demo_html(tmp_path, "--redact", "--top-k", "2")
    assert Page(text).all("img") == []
    assert "Images absent: the report is redacted" in text


def test_ends_are_the_k_riskiest_and_k_safest_with_a_finite_risk_value() -> None:
    report = hand_report()
    risky, safe = ends(report, 2)
    ranked = report.ranked()
    finite = [s for s in ranked if s.percentile is not None]
    assert risky == ranked[:2] and safe == finite[::-1][:2]
    assert not set(s.id for s in risky) & set(s.id for s in safe)


# --- the validation page -----------------------------------------------------------


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two uint8 images as [0, 1] images."""
    mse = np.mean((a.astype(np.float64) / 255.0 - b.astype(np.float64) / 255.0) ** 2)
    return float(10.0 * np.log10(1.0 / mse))


def test_validate_html_pairs_originals_with_reconstructions_and_draws_bands(
    demo_dir, tmp_path
) -> None:
    page_path, js = tmp_path / "v.html", tmp_path / "v.json"
    scan = ["--report", str(demo_dir / "report.json"), "--attacks", "dlg", "--budget", "fast"]
    args = ["validate", *scan, "--n-samples", "4", "--no-progress",
            "--html", str(page_path), "--json", str(js)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    text, v = page_path.read_text(encoding="utf-8"), json.loads(js.read_text())["validation"]
    page = Page(text)
    assert_self_contained(text)
    rows = page.tables["pairs"]
    assert [r[0] for r in rows] == ["original", "dlg"]
    samples = v["samples"]  # riskiest first; the page shows both ends
    shown = [samples[0], samples[1], samples[-2], samples[-1]]
    imgs = [decode(a["src"]) for a in page.all("img")]
    assert len(imgs) == 2 * len(shown)
    digits = load_digits().images
    for c, s in enumerate(shown):
        original, recon = imgs[c], imgs[len(shown) + c]
        position = int(s["id"].split(":")[1])
        np.testing.assert_array_equal(original, np.rint(digits[position] / 16.0 * 255.0))
        caption = float(rows[1][c + 1].split()[0])
        assert caption == pytest.approx(s["attacks"]["dlg"]["psnr"], abs=0.051)
        assert psnr_db(original, recon) == pytest.approx(caption, abs=0.15)
    charts = page.all("svg", class_="scatter")
    assert [c["data-score"] for c in charts] == list(v["directions"])
    bands = [float(a["data-db"]) for a in page.all("line", class_="band")]
    assert bands == list(PSNR_BANDS_DB) * len(charts)
    riskier = [a["data-riskier"] for a in page.all("text", class_="riskier")]
    assert riskier == [d.split("_")[0] for d in v["directions"].values()]


def test_validate_refuses_an_unwritable_html_path_before_any_work(tmp_path) -> None:
    bad = tmp_path / "missing" / "v.html"
    result = CliRunner().invoke(app, ["validate", "--demo", "--html", str(bad)])
    assert_refused(result, "v.html")
