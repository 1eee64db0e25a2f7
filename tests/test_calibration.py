"""Calibration statistics against closed forms and independent references.

The synthetic cases are built from real images (scikit-learn digits): a sample's "attack
quality" is a known monotone function of one of its image statistics, other scores are
other statistics of the same images.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.isotonic import IsotonicRegression

from leakaudit.calibration import CalibrationError, Candidate, MonotoneMap, cross_validate
from leakaudit.calibration.candidates import percentile_in
from leakaudit.calibration.confounds import confound_table, partial_spearman
from leakaudit.calibration.crossval import choose
from leakaudit.calibration.document import (
    CalibrationFileError,
    age,
    architecture_signature,
    check_applicable,
    read_calibration,
)
from leakaudit.calibration.fit import fit_calibration
from leakaudit.calibration.recovery import Recovery, recovery
from leakaudit.calibration.stratify import stratified_subset
from tests.ground_truth import digits


def _digit_stats(n: int = 120) -> dict[str, np.ndarray]:
    X, Y = digits(n, 8)
    x = X.reshape(n, -1).numpy().astype(np.float64)
    x = (x - x.min()) / (x.max() - x.min())
    return {
        "ink": x.mean(1),
        "edges": np.abs(np.diff(x.reshape(n, 8, 8), axis=2)).mean((1, 2)),
        "top_half": x.reshape(n, 8, 8)[:, :4].mean((1, 2)),
        "label": Y.numpy().astype(np.float64),
        "images": x,
    }


def test_cross_validation_recovers_the_score_and_its_direction() -> None:
    s = _digit_stats()
    # PSNR falls with the stroke edges: "edges" is the true score, smaller is riskier.
    psnr = 40.0 - 25.0 * (s["edges"] - s["edges"].min()) / np.ptp(s["edges"])
    psnr += 0.5 * np.sin(np.arange(len(psnr)))  # a deterministic wobble
    scores = {k: s[k] for k in ("ink", "edges", "top_half", "label")}
    cv = cross_validate(scores, psnr, k=4, seed=0)
    assert cv.chosen == Candidate(("edges",), (-1,))
    assert cv.chosen.direction == "lower_is_riskier"
    assert cv.procedure_rho > 0.9
    assert cv.procedure_ci95 is not None and cv.procedure_ci95[0] > 0.8
    assert all(c == cv.chosen for c in cv.folds_chosen)
    best = cv.candidates[0]
    assert best.candidate == cv.chosen and best.ci95 is not None
    assert best.ci95[0] <= best.rho <= best.ci95[1]
    # One row per score, each in its better direction on these samples.
    assert sorted(c.candidate.scores[0] for c in cv.candidates) == sorted(scores)
    assert all(c.rho >= 0 or np.isnan(c.rho) for c in cv.candidates)
    # Predicted PSNR follows the truth on these samples, inside the interval mostly.
    mid, low, high = cv.predict(scores)
    assert stats.spearmanr(mid, psnr).statistic > 0.95
    assert np.mean((psnr >= low) & (psnr <= high)) >= 0.6


def test_cross_validation_refuses_in_sample_and_tiny_sets() -> None:
    s = _digit_stats(30)
    scores = {"ink": s["ink"], "edges": s["edges"]}
    with pytest.raises(CalibrationError, match="in-sample"):
        cross_validate(scores, s["ink"], k=1)
    with pytest.raises(CalibrationError, match="too few"):
        cross_validate({k: v[:10] for k, v in scores.items()}, s["ink"][:10], k=4)


def test_no_signal_gives_a_held_out_rho_near_zero() -> None:
    # Quality unrelated to every score: selection on training folds must not leak into
    # the reported held-out ρ (an in-sample best-of-8 would look clearly positive).
    s = _digit_stats(120)
    scores = {k: s[k] for k in ("ink", "edges", "top_half")}
    psnr = 20.0 + 5.0 * np.cos(np.arange(120) * 2.399963)  # golden-angle sequence
    assert abs(stats.spearmanr(psnr, s["edges"]).statistic) < 0.2
    cv = cross_validate(scores, psnr, k=4, seed=1)
    assert cv.procedure_ci95 is not None
    assert cv.procedure_ci95[0] < 0 < cv.procedure_ci95[1]
    # The chosen rule is what the held-out procedure chose on all samples, not the best
    # descriptive row of another criterion.
    assert cv.chosen == choose(scores, psnr, list(scores))


def test_rank_average_wins_when_two_scores_each_carry_half() -> None:
    s = _digit_stats(160)
    a = stats.rankdata(s["edges"]) / 160
    b = stats.rankdata(s["top_half"]) / 160
    psnr = 10 + 20 * (a + (1 - b)) / 2  # edges larger-is-riskier, top_half smaller
    cv = cross_validate({"edges": s["edges"], "top_half": s["top_half"]}, psnr, k=4)
    assert set(cv.chosen.scores) == {"edges", "top_half"}
    signs = dict(zip(cv.chosen.scores, cv.chosen.signs))
    assert signs == {"edges": 1, "top_half": -1}
    assert cv.procedure_rho > 0.95


def test_monotone_map_matches_scikit_learn_isotonic_regression() -> None:
    s = _digit_stats()
    x, y = s["edges"], 30 * s["ink"] + 5 * s["top_half"]
    m = MonotoneMap.fit(x, y)
    ref = IsotonicRegression(increasing=True).fit(x, y)
    assert np.allclose(m(m.knots), ref.predict(m.knots), atol=1e-10)
    assert np.all(np.diff(m.values) >= 0)
    grid = np.linspace(x.min() - 1, x.max() + 1, 57)
    assert np.all(np.diff(m(grid)) >= -1e-12)
    assert m(np.array([np.nan]))[0] != m(np.array([np.nan]))[0]  # NaN in, NaN out
    back = MonotoneMap.from_dict(m.with_interval(np.array([-2.0, 0.0, 1.0, 3.0])).to_dict())
    assert np.array_equal(back.knots, m.knots) and back.residual_high > back.residual_low
    with pytest.raises(ValueError, match="not decrease"):
        MonotoneMap.from_dict({**m.to_dict(), "values": m.values[::-1].tolist()})


def test_recovery_against_closed_forms() -> None:
    x = _digit_stats(6)["images"]
    const = np.repeat(x.mean(1, keepdims=True), x.shape[1], axis=1)
    r = recovery(const, x)
    assert np.allclose(r.gain_db, 0.0, atol=1e-9)  # the trivial guess gains nothing
    assert not r.recovered.any()
    exact = recovery(x.copy(), x)
    assert np.allclose(exact.psnr_db, 120.0) and exact.recovered.all()
    noisy = x + 0.1 * (-1.0) ** np.arange(x.size).reshape(x.shape)
    r = recovery(noisy, x)
    assert np.allclose(r.psnr_db, 20.0, atol=1e-9)  # MSE = 0.01 exactly
    assert np.allclose(r.gain_db, 10 * np.log10(x.var(1) / 0.01))
    assert r.fraction == pytest.approx(np.mean((r.gain_db >= 6) & (r.psnr_db >= 15)))


def test_partial_spearman_matches_the_closed_form_for_one_control() -> None:
    s = _digit_stats()
    a, b, c = s["edges"], s["top_half"], s["ink"]
    ra, rb, rc = (stats.rankdata(v) for v in (a, b, c))
    r_ab, r_ac, r_bc = (np.corrcoef(u, v)[0, 1] for u, v in ((ra, rb), (ra, rc), (rb, rc)))
    closed = (r_ab - r_ac * r_bc) / np.sqrt((1 - r_ac**2) * (1 - r_bc**2))
    assert partial_spearman(a, b, [c]) == pytest.approx(closed, abs=1e-10)
    # A score that only measures brightness has no partial correlation left.
    quality = 3 * c + 0.01 * np.sin(np.arange(len(c)))
    bright = c * (1 + 0.05 * np.cos(np.arange(len(c)) * 2.399963))
    table = confound_table({"bright": bright}, quality, c, s["images"].std(1))
    assert table["bright"]["spearman_quality"] > 0.9
    assert abs(table["bright"]["partial_spearman_quality"]) < 0.3


def test_stratified_subset_takes_one_sample_per_stratum() -> None:
    s = _digit_stats()
    picks = stratified_subset({"edges": s["edges"]}, 12, seed=3)
    assert len(picks) == 12 and len(set(picks.tolist())) == 12
    order = np.argsort(stats.rankdata(s["edges"]), kind="stable")
    for stratum in np.array_split(order, 12):
        assert len(set(stratum.tolist()) & set(picks.tolist())) == 1
    assert np.array_equal(picks, stratified_subset({"edges": s["edges"]}, 12, seed=3))
    assert len(stratified_subset({"edges": s["edges"]}, 500)) == len(s["edges"])


def test_percentile_in_reference() -> None:
    ref = np.array([1.0, 2.0, 2.0, 3.0])
    got = percentile_in(np.array([0.0, 2.0, 3.0, 9.0, np.nan]), ref)
    assert np.allclose(got, [0.0, 0.5, 0.875, 1.0, 0.0])


# --- calibration.json -------------------------------------------------------------------


def _meta(model: torch.nn.Module) -> dict:
    return {
        "model": {
            "name": "lenet",
            "architecture": architecture_signature(model),
            "input_shape": [1, 8, 8],
            "checkpoint_sha256": "a" * 64,
        },
        "data": {"fingerprint": "f" * 64},
        "attack": {"attacks": ["idlg"], "budget": "fast"},
        "defense": {"kind": "none"},
    }


def _measured(n: int = 48) -> tuple[dict[str, np.ndarray], Recovery]:
    s = _digit_stats(n)
    x = s["images"]
    # The "attack" recovers images with little stroke edge best: noise ∝ edges.
    amp = 0.02 + 0.6 * (s["edges"] - s["edges"].min()) / np.ptp(s["edges"])
    recon = x + amp[:, None] * (-1.0) ** np.arange(x.shape[1])[None]
    return {k: s[k] for k in ("ink", "edges")}, recovery(recon, x)


def test_fit_writes_a_calibration_that_round_trips_and_predicts(tmp_path) -> None:
    from leakaudit.models import build_model

    model = build_model("lenet", num_classes=10, in_channels=1, image_size=8)
    scores, quality = _measured()
    assert 0.2 < quality.fraction < 1.0  # a real mix of recovered and not
    cal = fit_calibration(scores, quality, meta=_meta(model))
    assert cal.usable and cal.chosen == Candidate(("edges",), (-1,))
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(cal.to_dict()))
    back = read_calibration(path)
    mid, low, high = back.predict(scores)
    assert np.allclose(mid, cal.predict(scores)[0])
    assert np.all(low <= mid) and np.all(mid <= high)
    assert stats.spearmanr(mid, quality.psnr_db).statistic > 0.9
    assert (
        check_applicable(
            back,
            architecture=architecture_signature(model),
            input_shape=[1, 8, 8],
            checkpoint_sha256="a" * 64,
        )
        == []
    )


def test_calibration_refuses_another_model_and_warns_for_another_round() -> None:
    from leakaudit.models import build_model

    lenet = build_model("lenet", num_classes=10, in_channels=1, image_size=8)
    other = build_model("lenet", num_classes=4, in_channels=1, image_size=8)
    scores, quality = _measured()
    cal = fit_calibration(scores, quality, meta=_meta(lenet))
    sig = architecture_signature(lenet)
    with pytest.raises(CalibrationFileError, match="another architecture"):
        check_applicable(
            cal,
            architecture=architecture_signature(other),
            input_shape=[1, 8, 8],
            checkpoint_sha256="a" * 64,
        )
    with pytest.raises(CalibrationFileError, match="inputs"):
        check_applicable(cal, architecture=sig, input_shape=[3, 8, 8], checkpoint_sha256=None)
    warnings = check_applicable(
        cal, architecture=sig, input_shape=[1, 8, 8], checkpoint_sha256="b" * 64
    )
    assert len(warnings) == 1 and "another checkpoint" in warnings[0] and "today" in warnings[0]


def test_failed_attacks_give_no_calibration_and_say_why() -> None:
    from leakaudit.models import build_model

    s = _digit_stats(24)
    x = s["images"]
    failed = recovery(np.full_like(x, 0.5), x)  # a flat grey guess recovers nothing
    assert not failed.recovered.any()
    cal = fit_calibration(
        {"edges": s["edges"]},
        failed,
        meta=_meta(build_model("lenet", num_classes=10, in_channels=1, image_size=8)),
    )
    assert cal.status == "attacks_failed" and not cal.usable
    assert "attacks failed" in cal.recovery["reason"]
    assert cal.candidates == []  # no correlations of noise
    with pytest.raises(CalibrationFileError, match="cannot predict"):
        cal.predict({"edges": s["edges"]})


def test_bad_calibration_files_are_refused(tmp_path) -> None:
    p = tmp_path / "c.json"
    p.write_bytes(b"\x89PNG\r\n")
    with pytest.raises(CalibrationFileError, match="not calibration JSON"):
        read_calibration(p)
    p.write_text(json.dumps({"calibration_version": "9.0"}))
    with pytest.raises(CalibrationFileError, match="not supported"):
        read_calibration(p)
    p.write_text(json.dumps({"calibration_version": "1.0", "status": "calibrated"}))
    with pytest.raises(CalibrationFileError, match="malformed"):
        read_calibration(p)
    assert age("2026-11-19T10:00:00+00:00", datetime(2026, 11, 22, tzinfo=timezone.utc)).startswith(
        "2 days ago"
    )


def test_non_finite_reference_scores_round_trip_as_null(tmp_path) -> None:
    from leakaudit.models import build_model

    model = build_model("lenet", num_classes=10, in_channels=1, image_size=8)
    scores, quality = _measured()
    scores = {k: v.copy() for k, v in scores.items()}
    scores["edges"][3] = np.nan  # e.g. a cosine LAVP of a zero gradient
    cal = fit_calibration(scores, quality, meta=_meta(model))
    text = json.dumps(cal.to_dict(), allow_nan=False)  # what the CLI writes
    path = tmp_path / "c.json"
    path.write_text(text)
    back = read_calibration(path)
    assert np.isnan(back.reference["edges"][3])
    assert np.array_equal(np.isnan(back.predict(scores)[0]), np.isnan(cal.predict(scores)[0]))
