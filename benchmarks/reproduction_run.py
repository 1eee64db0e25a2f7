"""Run one setting of the reproduction study: scan, attack, correlate.

``run_setting`` scores every sample with leakaudit's engine, attacks every sample with
iDLG (L2 matching) and Inverting Gradients (cosine matching) undefended, and with iDLG
under Gaussian noise sized from I²F, and returns the Spearman correlation of each score
with each attack's reconstruction MSE as plain JSON-ready data.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from benchmarks.reproduction_setup import NOISE_TARGET_RMSE, Setting, load_data, make_model
from leakaudit.attacks import attack_config
from leakaudit.defenses import GaussianNoise
from leakaudit.scores.engine import score_samples
from leakaudit.scores.names import ALL_SCORES
from leakaudit.scores.options import ScoreOptions, ScoreResult
from leakaudit.validation import ValidationResult, validate

#: Attack conditions, in table order: (key, attack, defended).
CONDITIONS: tuple[tuple[str, str, bool], ...] = (
    ("idlg", "idlg", False),
    ("ig", "ig", False),
    ("idlg+noise", "idlg", True),
)

#: Below this fraction of converged samples in float32 the scan is redone in float64.
MIN_CONVERGED = 0.9


def scan(setting: Setting, x: Tensor, y: Tensor) -> tuple[ScoreResult, str]:
    """Every score of every sample under Gaussian noise of σ = 1 (I²F is linear in σ).

    Returns:
        The engine's result and the dtype used (``"float32"``, or ``"float64"`` when
        float32 left more than 10% of the samples non-converged).
    """
    model = make_model(setting)
    for dtype in (torch.float32, torch.float64):
        opts = ScoreOptions(
            defense=GaussianNoise(1.0),
            n_probes=setting.n_probes,
            max_iter=setting.max_iter,
            seed=setting.seed,
            device="cpu",
            dtype=dtype,
        )
        res = score_samples(model, (x, y), opts)
        if float(res.diagnostics["converged"].double().mean()) >= MIN_CONVERGED:
            break
    return res, str(dtype).removeprefix("torch.")


def noise_sigma(i2f_unit: Tensor, d: int) -> float:
    """σ at which the median sample's I²F predicts a per-pixel RMSE of NOISE_TARGET_RMSE.

    I²F at σ is σ·I²F(σ=1) and predicts ‖x̂ − x*‖ over d pixels, so the median predicted
    per-pixel RMSE is σ·median(I²F(1))/√d.
    """
    med = float(torch.nanmedian(i2f_unit))
    return NOISE_TARGET_RMSE * math.sqrt(d) / med


def i2f_calibration(i2f: list[float], mse: list[float], d: int) -> dict[str, float]:
    """Measured error over I²F's prediction, per sample: √(MSE·d) / I²F.

    Args:
        i2f: ``[N]`` predicted ‖x̂ − x*‖ at the study's σ.
        mse: ``[N]`` measured per-pixel MSE of the attack under that noise.
        d: pixels per sample.

    Returns:
        Median and 10th/90th percentiles over the samples where the ratio is finite,
        and how many those are.
    """
    ratio = np.sqrt(np.asarray(mse) * d) / np.asarray(i2f)
    ok = ratio[np.isfinite(ratio)]
    if ok.size == 0:
        return {
            "median_measured_over_predicted": float("nan"),
            "q10": float("nan"),
            "q90": float("nan"),
            "n_finite": 0,
        }
    return {
        "median_measured_over_predicted": float(np.median(ok)),
        "q10": float(np.quantile(ok, 0.1)),
        "q90": float(np.quantile(ok, 0.9)),
        "n_finite": int(ok.size),
    }


def _correlations(result: ValidationResult, attack: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for rec in result.agreement:
        if rec.attack == attack and rec.metric == "mse":
            rho = rec.spearman
            out[rec.score] = {
                "rho": rho.value,
                "ci95": list(rho.ci95) if rho.ci95 else None,
                "p_value": rho.p_value,
                "undefined": rho.undefined,
                "spec_direction": rec.direction,
                "n": rec.n,
            }
    return out


def _quality_summary(result: ValidationResult, attack: str) -> dict[str, Any]:
    psnr = result.quality[attack]["psnr"].numpy()
    correct = (result.attack_labels[attack] == result.labels).double().mean()
    return {
        "psnr_median": float(np.median(psnr)),
        "psnr_q10": float(np.quantile(psnr, 0.1)),
        "psnr_q90": float(np.quantile(psnr, 0.9)),
        "mse_median": float(result.quality[attack]["mse"].median()),
        "label_correct": float(correct),
    }


def _by_position(result: ValidationResult, values: Tensor) -> list[float]:
    """Per-sample values back in dataset order (validate orders them riskiest first)."""
    out = torch.empty_like(values, dtype=torch.float64)
    out[result.indices] = values.double()
    return out.tolist()


def run_setting(setting: Setting) -> dict[str, Any]:
    """Scan, attack and correlate one setting (see the module docstring).

    Returns:
        ``{"setting", "dtype", "converged", "lanczos_steps_median", "sigma", "seconds",
        "quality": {condition: ...}, "correlations": {condition: {score: ...}},
        "i2f_calibration", "samples"}``.
    """
    torch.manual_seed(setting.seed)
    x, y = load_data(setting)
    d = int(x[0].numel())
    t0 = time.perf_counter()
    res, dtype = scan(setting, x, y)
    scan_s = time.perf_counter() - t0
    unit = res.diagnostics["i2f_unit_sigma"]
    sigma = noise_sigma(unit, d)
    scores = {k: res.scores[k].clone() for k in ALL_SCORES}
    for k in ("i2f", "i2f_lb"):  # Gaussian noise: exactly linear in σ
        scores[k] = scores[k] * sigma

    model = make_model(setting)
    common: dict[str, Any] = {
        "selection": list(range(setting.n)),
        "batch_size": setting.n,
        "seed": setting.seed,
        "n_resamples": setting.n_resamples,
        "use_lpips": False,
    }
    cfgs = {
        "idlg": attack_config("idlg", "fast", iterations=setting.idlg_iters),
        "ig": attack_config("ig", "fast", iterations=setting.ig_iters, restarts=1),
    }
    clean = validate(model, x, y, scores, attacks=("idlg", "ig"), attack_configs=cfgs, **common)
    noisy = validate(
        model,
        x,
        y,
        scores,
        attacks=("idlg",),
        defense=GaussianNoise(sigma),
        attack_configs=cfgs,
        **common,
    )
    results = {"idlg": (clean, "idlg"), "ig": (clean, "ig"), "idlg+noise": (noisy, "idlg")}
    samples: dict[str, Any] = {
        "scores": {k: v.tolist() for k, v in scores.items()},
        "labels": y.tolist(),
        "mse": {key: _by_position(r, r.quality[a]["mse"]) for key, (r, a) in results.items()},
    }
    seconds = {"scan": scan_s} | {key: r.seconds[a] for key, (r, a) in results.items()}
    return {
        "setting": setting.to_dict(),
        "d": d,
        "dtype": dtype,
        "converged": float(res.diagnostics["converged"].double().mean()),
        "lanczos_steps_median": float(res.diagnostics["lanczos_steps"].double().median()),
        "sigma": sigma,
        "noise_rule": (
            f"σ = {NOISE_TARGET_RMSE}·√d / median(I²F at σ=1): the median sample's I²F "
            f"predicts a per-pixel RMSE of {NOISE_TARGET_RMSE} (PSNR 20 dB)"
        ),
        "seconds": seconds | {"total": sum(seconds.values())},
        "quality": {key: _quality_summary(r, a) for key, (r, a) in results.items()},
        "correlations": {key: _correlations(r, a) for key, (r, a) in results.items()},
        "samples": samples,
        "i2f_calibration": i2f_calibration(
            samples["scores"]["i2f"], samples["mse"]["idlg+noise"], d
        ),
    }
