"""Quality metrics against scikit-image, agreement statistics against scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from skimage import data as skdata
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity
from skimage.transform import resize

from leakaudit.metrics.agreement import (
    Correlation,
    agreement,
    bootstrap_ci,
    correlation,
    direction_verdict,
    expected_sign,
    kendall_rows,
    precision_at_k,
    spearman_rows,
)
from leakaudit.metrics.quality import lpips_status, mse, psnr, quality_metrics, ssim


def photo_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 3×32×32 crops of the astronaut photo and noisy copies, in [0, 1]."""
    img = resize(skdata.astronaut(), (64, 64), anti_aliasing=True)
    ref = np.stack([img[:32, :32], img[32:, 32:]]).transpose(0, 3, 1, 2)
    rng = np.random.default_rng(0)
    noisy = np.clip(ref + rng.normal(0, [[[[0.05]]], [[[0.2]]]], ref.shape), 0, 1)
    return torch.tensor(noisy), torch.tensor(ref)


def test_mse_psnr_ssim_match_scikit_image_per_sample() -> None:
    x, ref = photo_batch()
    got_mse, got_psnr, got_ssim = mse(x, ref), psnr(x, ref), ssim(x, ref)
    for i in range(2):
        a, b = x[i].numpy().transpose(1, 2, 0), ref[i].numpy().transpose(1, 2, 0)
        assert got_mse[i].item() == pytest.approx(mean_squared_error(b, a), rel=1e-12)
        assert got_psnr[i].item() == pytest.approx(
            peak_signal_noise_ratio(b, a, data_range=1.0), rel=1e-12
        )
        want = structural_similarity(a, b, data_range=1.0, channel_axis=-1)
        assert got_ssim[i].item() == pytest.approx(want, rel=1e-12)
    assert got_psnr[0] > got_psnr[1] and got_ssim[0] > got_ssim[1]  # less noise is better


@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_constant_offset_has_closed_form_mse_and_psnr(data_range: float) -> None:
    _, ref = photo_batch()
    ref = ref * 0.8 * data_range  # room for the offset inside [0, range]
    offsets = torch.tensor([0.01, 0.1]).double().view(2, 1, 1, 1) * data_range
    got_mse, got_psnr = mse(ref + offsets, ref), psnr(ref + offsets, ref, data_range)
    c = offsets.flatten()
    assert torch.allclose(got_mse, c**2, rtol=1e-12, atol=0)
    assert torch.allclose(got_psnr, 10 * torch.log10(data_range**2 / c**2), rtol=1e-12, atol=0)


def test_mismatched_shapes_are_refused_not_broadcast() -> None:
    x, ref = photo_batch()
    with pytest.raises(ValueError, match="same dimensions"):
        mse(x[:, :1], ref)  # one channel against three
    with pytest.raises(ValueError, match="same dimensions"):
        psnr(x[:, :1], ref)


def test_perfect_reconstruction_is_finite_and_maximal() -> None:
    _, ref = photo_batch()
    q, _ = quality_metrics(ref, ref, use_lpips=False)
    assert torch.all(q["mse"] == 0) and torch.all(q["ssim"] == 1)
    assert torch.all(torch.isfinite(q["psnr"])) and torch.all(q["psnr"] >= 120)


def test_small_images_get_a_fitting_ssim_window() -> None:
    x, ref = photo_batch()
    small = ssim(x[:, :1, :6, :6], ref[:, :1, :6, :6])  # 6×6 → 5×5 window
    want = structural_similarity(
        x[0, 0, :6, :6].numpy(), ref[0, 0, :6, :6].numpy(), data_range=1.0, win_size=5
    )
    assert small[0].item() == pytest.approx(want, rel=1e-12)


def test_lpips_is_skipped_with_a_note_when_unavailable() -> None:
    ok, note = lpips_status()
    x, ref = photo_batch()
    q, notes = quality_metrics(x, ref)
    if ok:
        assert "lpips" in q
    else:
        assert "lpips" not in q and notes == [note] and "LPIPS skipped" in note


# Ties in both vectors, and a monotone-but-noisy relation.
X = np.array([1.0, 2.0, 2.0, 3.0, 5.0, 5.0, 5.0, 8.0, 9.0, 10.0, 4.0, 7.0])
Y = np.array([2.0, 1.0, 3.0, 3.0, 6.0, 4.0, 6.0, 9.0, 8.0, 12.0, 6.0, 6.0])


def test_correlations_and_p_values_match_scipy_with_ties() -> None:
    rho = correlation(X, Y, "spearman")
    tau = correlation(X, Y, "kendall")
    want_rho, want_tau = stats.spearmanr(X, Y), stats.kendalltau(X, Y)
    assert rho.value == pytest.approx(want_rho.statistic, abs=1e-12)
    assert rho.p_value == pytest.approx(want_rho.pvalue, rel=1e-10)
    assert tau.value == pytest.approx(want_tau.statistic, abs=1e-12)
    assert tau.p_value == pytest.approx(want_tau.pvalue, rel=1e-10)


def test_vectorised_row_statistics_match_scipy_on_bootstrap_resamples() -> None:
    rng = np.random.default_rng(3)
    idx = rng.integers(0, X.size, size=(40, X.size))  # duplicates → extra ties
    xs, ys = X[idx], Y[idx]
    rho, tau = spearman_rows(xs, ys), kendall_rows(xs, ys, chunk=7)
    for r in range(40):
        if np.ptp(xs[r]) == 0 or np.ptp(ys[r]) == 0:
            assert np.isnan(rho[r]) and np.isnan(tau[r])
            continue
        assert rho[r] == pytest.approx(stats.spearmanr(xs[r], ys[r]).statistic, abs=1e-12)
        assert tau[r] == pytest.approx(stats.kendalltau(xs[r], ys[r]).statistic, abs=1e-12)


def test_bootstrap_interval_is_the_percentile_of_the_resampled_statistic() -> None:
    ci, n = bootstrap_ci(X, Y, "spearman", n_resamples=500, seed=7)
    rng = np.random.default_rng(7)
    idx = rng.integers(0, X.size, size=(500, X.size))
    vals = [stats.spearmanr(X[i], Y[i]).statistic for i in idx]
    vals = np.array([v for v in vals if np.isfinite(v)])
    assert n == vals.size
    assert ci == pytest.approx(tuple(np.percentile(vals, [2.5, 97.5])), abs=1e-12)
    assert ci[0] < stats.spearmanr(X, Y).statistic < ci[1]
    again, _ = bootstrap_ci(X, Y, "spearman", n_resamples=500, seed=7)
    assert again == ci  # seeded


@pytest.mark.parametrize("method", ["spearman", "kendall"])
def test_bootstrap_interval_equals_scipy_bootstrap_of_scipys_coefficient(method: str) -> None:
    coefficient = stats.spearmanr if method == "spearman" else stats.kendalltau
    ref = stats.bootstrap(
        (X, Y),
        lambda u, v: coefficient(u, v).statistic,
        paired=True,
        vectorized=False,
        n_resamples=300,
        method="percentile",
        rng=np.random.default_rng(11),
    )
    ci, n = bootstrap_ci(X, Y, method, n_resamples=300, seed=11)  # type: ignore[arg-type]
    assert n == 300
    want = (ref.confidence_interval.low, ref.confidence_interval.high)
    assert ci == pytest.approx(want, abs=1e-12)


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
def test_undefined_resamples_are_left_out_of_the_interval() -> None:
    x, y = X[:4], Y[:4]  # 4 samples: about 1 resample in 30 is constant
    ci, n = bootstrap_ci(x, y, "spearman", n_resamples=400, seed=5)
    idx = np.random.default_rng(5).integers(0, 4, size=(400, 4))  # scipy's resampling
    vals = np.array([stats.spearmanr(x[i], y[i]).statistic for i in idx])
    defined = vals[np.isfinite(vals)]
    assert 300 < n == defined.size < 400
    assert ci == pytest.approx(tuple(np.percentile(defined, [2.5, 97.5])), abs=1e-12)


def test_constant_score_is_undefined_not_nan() -> None:
    record = agreement(
        np.full(8, 3.0),
        np.arange(8.0),
        score_name="grad_norm",
        attack="dlg",
        metric="psnr",
        score_direction="higher_is_riskier",
        metric_direction="higher_is_better",
    )
    assert record.spearman.value is None and record.kendall.value is None
    assert record.spearman.undefined == "the score is constant over the validated samples"
    assert record.direction == "undefined" and record.precision_at_k is None
    d = record.to_dict()
    assert d["spearman"]["value"] is None and d["spearman"]["ci95"] is None
    q = correlation(np.arange(5.0), np.ones(5), "kendall")
    assert q.value is None and "quality is constant" in (q.undefined or "")
    assert "at least 3" in (correlation([1.0, 2.0], [1.0, 2.0], "spearman").undefined or "")


def test_precision_at_k_on_a_hand_made_case() -> None:
    score = np.array([0.9, 0.1, 0.5, 0.7, 0.3, 0.2])
    psnr_vals = np.array([40.0, 35.0, 12.0, 30.0, 10.0, 11.0])
    # higher is riskier: riskiest 3 = {0, 3, 2}; best 3 by PSNR = {0, 1, 3} → 2/3.
    kw = {"metric_direction": "higher_is_better"}
    assert precision_at_k(score, psnr_vals, 3, score_direction="higher_is_riskier", **kw) == 2 / 3
    # lower is riskier: riskiest 3 = {1, 5, 4}; best 3 = {0, 1, 3} → 1/3.
    assert precision_at_k(score, psnr_vals, 3, score_direction="lower_is_riskier", **kw) == 1 / 3
    # MSE (lower is better): best 2 = the two smallest = {4, 5}; riskiest 2 (lower) = {1, 5}.
    mse_vals = np.array([0.5, 0.4, 0.3, 0.2, 0.01, 0.02])
    assert (
        precision_at_k(
            score,
            mse_vals,
            2,
            score_direction="lower_is_riskier",
            metric_direction="lower_is_better",
        )
        == 0.5
    )
    with pytest.raises(ValueError, match="k must be"):
        precision_at_k(score, psnr_vals, 7, score_direction="higher_is_riskier", **kw)


def test_direction_verdicts_follow_the_sign_and_interval() -> None:
    assert expected_sign("lower_is_riskier", "higher_is_better") == -1
    assert expected_sign("lower_is_riskier", "lower_is_better") == 1
    assert expected_sign("higher_is_riskier", "lower_is_better") == -1
    n = np.arange(20.0)
    # A score that falls as PSNR rises, read "lower is riskier": the SPEC direction holds.
    held = agreement(
        -n,
        n + np.sin(n),
        score_name="i2f",
        attack="ig",
        metric="psnr",
        score_direction="lower_is_riskier",
        metric_direction="higher_is_better",
    )
    assert held.spearman.value is not None and held.spearman.value < -0.9
    assert held.direction == "held" and held.precision_at_k == 1.0
    reversed_ = agreement(
        n,
        n + np.sin(n),
        score_name="i2f",
        attack="ig",
        metric="psnr",
        score_direction="lower_is_riskier",
        metric_direction="higher_is_better",
    )
    assert reversed_.direction == "reversed" and reversed_.precision_at_k == 0.0
    straddling = Correlation(0.1, 0.6, (-0.2, 0.4), 1000)
    assert direction_verdict(straddling, 1) == "inconclusive"
    assert direction_verdict(straddling, -1) == "inconclusive"
    assert direction_verdict(Correlation(-0.5, 0.01, (-0.8, -0.2), 1000), -1) == "held"
