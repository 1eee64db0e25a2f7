"""The engine benchmark runs end to end at a tiny size and reports consistent figures."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent


def test_engine_speed_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "engine_speed.py"),
        "--skip-resnet",
        "--skip-memory",
        "--lenet-n",
        "3",
        "--lenet-ref-n",
        "1",
        "--threads",
        "1",
        "--json",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    assert "| lenet | cpu |" in proc.stdout
    row = json.loads(out.read_text())["rows"][0]
    # The reference and leakaudit agree on λ_max (the figures compare equal work).
    assert row["lam_max_rel_diff"] < 1e-3
    assert row["ratio"] == row["ours_per_s"] / row["ref_per_s"]
    # Each figure's spread over the rounds brackets its median.
    for key, median in (("ours_per_s", "ours_per_s"), ("full_ratio", "full_ratio")):
        lo, hi = row["spread"][key]
        assert lo <= row[median] <= hi
    assert "rounds" in proc.stdout and "[" in proc.stdout
    assert row["full_converged"] == 1.0
    # Machine-independent cost: products were counted, and the active set never adds any.
    assert row["full_cost"]["products"] > row["ours_cost"]["products"] > 0
    effect = row["active_set"]
    assert effect["active_products_per_sample"] <= effect["all_products_per_sample"]
    assert 0 < row["full_cost"]["product_fraction"]


def test_scan_speed_benchmark_smoke(tmp_path: Path) -> None:
    # This tree against itself: the figures are consistent and the rankings agree.
    out = tmp_path / "scan.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "scan_speed.py"), "--quick"]
    cmd += ["--old", str(ROOT), "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True)
    assert "| demo | 10 | grad_norm, i2f |" in proc.stdout
    assert "| imagefolder | 8 | grad_norm |" in proc.stdout
    rows = {r["case"]: r for r in json.loads(out.read_text())["rows"]}
    for row in rows.values():
        assert row["same_ranking"] is True
        assert row["scan_ratio"] == row["old_scan_s"] / row["new_scan_s"]
        ratios = row["scan_ratio_rounds"]
        assert len(ratios) == len(row["new_scan_rounds"]) >= 1
        assert min(row["new_scan_rounds"]) <= row["new_scan_s"] <= max(row["new_scan_rounds"])
        assert row["verdict"] in ("PASS", "FAIL") and row["verdict"] in proc.stdout
    assert rows["imagefolder"]["computed_new"] == ["grad_norm"]


def test_trained_study_smoke(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "trained_study.py"), "--quick"]
    proc = subprocess.run(
        [*cmd, "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, check=True
    )
    assert "## Setup" in proc.stdout
    data = json.loads((tmp_path / "trained.json").read_text())
    assert [r["setting"]["name"] for r in data["settings"]] == ["mlp-s0", "cnn-s0"]
    for r in data["settings"]:
        assert (tmp_path / f"setting-{r['setting']['name']}.json").exists()
        # The model was trained (chance is 0.1) and every sample was attacked by both.
        assert r["test_accuracy"] > 0.3
        n = len(r["test_positions"])
        psnr = r["samples"]["psnr"]
        assert len(psnr["idlg"]) == len(psnr["ig"]) == n
        # best-of-attacks is the per-sample maximum of the two attacks' PSNR.
        assert psnr["best"] == [max(a, b) for a, b in zip(psnr["idlg"], psnr["ig"])]
        # Correlations exist only where part, not all, of the samples were recovered.
        recovered = r["quality"]["best"]["recovered"]
        assert (r["correlations"] is not None) == (5 <= recovered < n)
        if r["correlations"] is None:
            continue
        # Every reported ρ is scipy's Spearman ρ of the saved per-sample values.
        for score, row in r["correlations"].items():
            want = stats.spearmanr(r["samples"]["scores"][score], psnr["best"]).statistic
            assert row["best"]["rho"] == pytest.approx(want, abs=1e-9)
            low, high = row["best"]["ci95"]
            assert -1 <= low <= high <= 1
