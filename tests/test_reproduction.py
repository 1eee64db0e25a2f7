"""The reproduction study's script, end to end at a tiny size (benchmarks/reproduction.py)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from leakaudit.scores.names import ALL_SCORES

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ("lenet-digits", "lenet-photos", "resnet20-digits", "resnet20-photos")
CONDITIONS = ("idlg", "ig", "idlg+noise")
CELL = re.compile(r"^([+-]\d\.\d\d \[[+-]\d\.\d\d, [+-]\d\.\d\d\]\*?|undefined \(.+\))$")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict, Path]:
    out = tmp_path_factory.mktemp("repro")
    proc = subprocess.run(
        [sys.executable, "benchmarks/reproduction.py", "--quick", "--n", "5", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, json.loads((out / "reproduction.json").read_text()), out


def test_markdown_has_one_table_per_setting_with_every_score(study) -> None:
    stdout, _, out = study
    text = (out / "reproduction.md").read_text()
    assert stdout.strip() == text.strip()
    headers = re.findall(r"^### (\S+) × (\S+) ", text, flags=re.M)
    assert ["-".join(h) for h in headers] == list(SETTINGS)
    for block in text.split("## Summary")[0].split("### ")[1:]:
        rows = [ln for ln in block.splitlines() if ln.startswith("| `")]
        assert [r.split("`")[1] for r in rows] == list(ALL_SCORES)
        for row in rows:
            cells = [c.strip() for c in row.strip("|").split("|")[1:]]
            assert len(cells) == len(CONDITIONS)
            assert all(CELL.match(c) for c in cells), row


def test_correlations_are_finite_or_explicitly_undefined(study) -> None:
    _, data, _ = study
    assert [s["setting"]["name"] for s in data["settings"]] == list(SETTINGS)
    for res in data["settings"]:
        for cond in CONDITIONS:
            for score in ALL_SCORES:
                c = res["correlations"][cond][score]
                if c["rho"] is None:
                    assert isinstance(c["undefined"], str) and c["undefined"]
                else:
                    assert -1.0 <= c["rho"] <= 1.0
                    assert c["ci95"] is None or all(math.isfinite(v) for v in c["ci95"])


def test_reported_rho_equals_scipy_on_the_saved_samples(study) -> None:
    _, data, _ = study
    for res in data["settings"]:
        samples = res["samples"]
        for cond in CONDITIONS:
            mse = np.asarray(samples["mse"][cond])
            for score in ALL_SCORES:
                rho = res["correlations"][cond][score]["rho"]
                if rho is not None:
                    expected = stats.spearmanr(samples["scores"][score], mse).statistic
                    assert rho == pytest.approx(expected, abs=1e-9)


def test_noise_makes_the_median_i2f_predict_a_tenth_rmse(study) -> None:
    _, data, _ = study
    for res in data["settings"]:
        i2f = np.sort(res["samples"]["scores"]["i2f"])
        lower_median = i2f[(len(i2f) - 1) // 2]  # torch.median's convention
        assert lower_median / math.sqrt(res["d"]) == pytest.approx(0.1, rel=1e-6)
        assert res["sigma"] > 0
