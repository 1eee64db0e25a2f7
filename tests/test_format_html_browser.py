"""The demo's HTML report in a real browser: headless Chromium builds the page's DOM (the
ranked table, the histograms, the images) and draws it, and the screenshot shows every
thumbnail's digit, pixel for pixel, where the page puts it (so the PNGs decoded, and the
page's own style ran under its Content-Security-Policy: without it an 8×8 digit is not
drawn 80×80).

Skipped where no Chromium is installed (``apt-get install chromium``; ``.ci/run`` does).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_format_html import (
    HOSTILE_SHOWN,
    Page,
    assert_self_contained,
    decode,
    hostile_page,
    scan_demo_html,
)

CHROMIUM = next(
    (
        p
        for p in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
        if p and Path(p).is_file()
    ),
    None,
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)"
)

TOP_K = 3
#: The page draws thumbnails 80 CSS pixels wide: an 8×8 digit, 10 screen pixels a pixel.
SCALE = 10


def chromium(url: str, profile: Path, *args: str) -> str:
    """Run headless Chromium on ``url`` (offline, fresh profile) and return its stdout."""
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--hide-scrollbars", "--force-device-scale-factor=1",
        f"--user-data-dir={profile}", *args, url,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str, dict]:
    torch.set_num_threads(1)
    where = tmp_path_factory.mktemp("browser")
    text, report = scan_demo_html(where, "--top-k", str(TOP_K))
    return where / "report.html", text, report


def test_browser_builds_the_table_histograms_and_images(demo, tmp_path) -> None:
    path, _, report = demo
    dom = Page(chromium(path.as_uri(), tmp_path / "profile", "--dump-dom"))
    ranked = sorted(report["samples"], key=lambda s: s["rank"])
    assert [r[1] for r in dom.tables["ranked"]] == [s["id"] for s in ranked[:TOP_K]]
    charts = dom.all("svg", class_="histogram")
    assert [c["data-score"] for c in charts] == list(report["summary"]["scores"])
    assert len(dom.all("rect", class_="bar")) > len(charts)
    assert len(dom.all("img", class_="thumb")) == 2 * TOP_K


def find(screen: np.ndarray, digit: np.ndarray, tol: int = 3) -> list[tuple[int, int]]:
    """Top-left screen pixels where ``digit`` ``[h, w]`` may be drawn ``SCALE`` times
    larger: every block's centre within ``tol`` of its pixel (candidates are narrowed one
    pixel at a time, those least like the white page first)."""
    h, w = digit.shape
    c = SCALE // 2
    span = (screen.shape[0] - SCALE * h + 1, screen.shape[1] - SCALE * w + 1)
    order = sorted(np.ndindex(h, w), key=lambda ij: int(digit[ij]))
    i, j = order[0]
    ys, xs = np.nonzero(np.abs(screen[c : c + span[0], c : c + span[1]] - digit[i, j]) <= tol)
    for i, j in order[1:]:
        keep = np.abs(screen[ys + SCALE * i + c, xs + SCALE * j + c] - digit[i, j]) <= tol
        ys, xs = ys[keep], xs[keep]
    return list(zip(ys.tolist(), xs.tolist()))


def test_screenshot_shows_every_thumbnail_pixel_for_pixel(demo, tmp_path) -> None:
    path, text, _ = demo
    shot = tmp_path / "shot.png"
    chromium(path.as_uri(), tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,3000")
    rgb = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)
    screen = rgb[..., 0]
    thumbs = Page(text).all("img", class_="thumb")
    places = []
    for a in thumbs:
        digit = decode(a["src"]).astype(np.int16)
        drawn = np.kron(digit, np.ones((SCALE, SCALE), dtype=np.int16))[..., None]
        exact = [
            (y, x)
            for y, x in find(screen, digit)
            if np.abs(rgb[y : y + drawn.shape[0], x : x + drawn.shape[1]] - drawn).max() <= 3
        ]
        assert len(exact) == 1, f"thumbnail of rank {a['data-rank']} drawn {len(exact)} times"
        places.append(exact[0])
    # one row: the riskiest, then the safest, left to right
    assert len({y for y, _ in places}) == 1
    assert [x for _, x in places] == sorted(x for _, x in places)


def test_browser_shows_hostile_ids_as_text(tmp_path) -> None:
    path = tmp_path / "hostile.html"
    path.write_text(hostile_page(), encoding="utf-8")
    dom_text = chromium(path.as_uri(), tmp_path / "profile", "--dump-dom")
    dom = Page(dom_text)
    assert_self_contained(dom_text)  # the browser built no element from the ids
    assert dom.tables["ranked"][0][1] == HOSTILE_SHOWN
    assert [a["data-rank"] for a in dom.all("img")] == ["1"]
