"""Run one setting of the trained-model study: train, scan, attack, correlate, calibrate.

``run_setting`` trains the setting's model on the digits train split, ships it through a
safetensors file, scores the drawn test samples with leakaudit's engine under the
setting's defence, attacks them with iDLG (L2 matching, L-BFGS) and Inverting Gradients
(cosine matching), and reports per score: Spearman ρ with each attack's PSNR and with
the best attack's PSNR (95% bootstrap interval), the partial ρ controlling for image
mean and contrast, and the held-out ρ of ``leakaudit calibrate``'s cross-validated
procedure next to the best single score chosen in hindsight.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from benchmarks.trained_study_setup import Setting, accuracy, draw, shipped, split, train
from leakaudit.attacks import attack_config
from leakaudit.calibration.confounds import partial_spearman
from leakaudit.calibration.crossval import bootstrap_ci, spearman
from leakaudit.calibration.fit import fit_calibration, fit_target
from leakaudit.calibration.recovery import Recovery, best_over_attacks, recovery
from leakaudit.defenses import GaussianNoise
from leakaudit.scores.engine import score_samples
from leakaudit.scores.names import ALL_SCORES
from leakaudit.scores.options import ScoreOptions
from leakaudit.validation import ValidationResult, validate

ATTACKS: tuple[str, ...] = ("idlg", "ig")

#: Below this many recovered samples (best attack) no correlation is reported: ranking
#: failures would correlate scores with noise (the calibration's own floor is 3).
MIN_RECOVERED = 5


def usable(q: Recovery) -> bool:
    """Whether an attack recovered some (≥ MIN_RECOVERED) but not all samples."""
    return MIN_RECOVERED <= int(q.recovered.sum()) < len(q.recovered)


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _scan(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, s: Setting) -> Any:
    """Every score under the setting's defence (σ = 1 when undefended: I²F is linear in σ)."""
    opts = ScoreOptions(
        defense=GaussianNoise(s.sigma or 1.0),
        n_probes=s.n_probes,
        seed=s.seed,
        device="cpu",
        dtype=torch.float64,
    )
    return score_samples(model.double(), (x.double(), y), opts)


def _attack(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    scores: dict[str, torch.Tensor],
    s: Setting,
) -> ValidationResult:
    """Attack every sample with iDLG and IG under the setting's defence."""
    cfgs = {
        "idlg": attack_config("idlg", "fast", iterations=s.idlg_iters),
        "ig": attack_config("ig", "fast", iterations=s.ig_iters, restarts=1),
    }
    return validate(
        model.float(),
        x,
        y,
        scores,
        attacks=ATTACKS,
        defense=GaussianNoise(s.sigma) if s.sigma > 0 else None,
        attack_configs=cfgs,
        selection=list(range(len(y))),
        batch_size=len(y),
        seed=s.seed,
        n_resamples=200,
        use_lpips=False,
    )


def score_row(v: np.ndarray, q: Recovery, seed: int, n_resamples: int) -> dict[str, Any]:
    """One score against one quality: ρ, 95% bootstrap interval, partial ρ."""
    ci = bootstrap_ci(v, q.psnr_db, seed, n_resamples)
    return {
        "rho": _num(spearman(v, q.psnr_db)),
        "ci95": list(ci) if ci else None,
        "partial_rho": _num(partial_spearman(v, q.psnr_db, [q.mean, q.contrast])),
        "rho_floored_target": _num(spearman(v, fit_target(q))),
    }


def _quality(q: Recovery, seconds: float | None = None) -> dict[str, Any]:
    return {
        "recovered": int(q.recovered.sum()),
        "fraction": q.fraction,
        "psnr_median": float(np.median(q.psnr_db)),
        "psnr_q10": float(np.quantile(q.psnr_db, 0.1)),
        "psnr_q90": float(np.quantile(q.psnr_db, 0.9)),
        "seconds": seconds,
    }


def _calibration(scores: dict[str, np.ndarray], q: Recovery, seed: int) -> dict[str, Any]:
    """``leakaudit calibrate``'s procedure (4-fold CV) on these samples."""
    meta: dict[str, dict[str, Any]] = {"model": {}, "data": {}, "attack": {}, "defense": {}}
    cal = fit_calibration(scores, q, meta=meta, k=4, seed=seed)
    if cal.status != "calibrated":
        return {"status": cal.status}
    best = cal.candidates[0]
    return {
        "status": cal.status,
        "heldout_rho": cal.procedure["cv_spearman"],
        "heldout_ci95": cal.procedure["ci95"],
        "chosen": cal.chosen.name if cal.chosen else None,
        "folds_chosen": cal.procedure["folds_chosen"],
        "hindsight_best": best["name"],
        "hindsight_rho": best["spearman"],
        "hindsight_ci95": best["ci95"],
    }


def _analyse(result: ValidationResult, s: Setting) -> dict[str, Any]:
    originals = result.originals.numpy()
    recons = {a: result.reconstructions[a].numpy() for a in ATTACKS}
    per = {a: recovery(recons[a], originals) for a in ATTACKS}
    best = best_over_attacks(recons, originals)
    scores = {k: v.double().numpy() for k, v in result.scores.items()}
    out: dict[str, Any] = {
        "quality": {a: _quality(per[a], result.seconds.get(a)) for a in ATTACKS}
        | {"best": _quality(best)},
        "samples": {
            "scores": {k: v.tolist() for k, v in scores.items()},
            "psnr": {a: per[a].psnr_db.tolist() for a in ATTACKS} | {"best": best.psnr_db.tolist()},
            "mean": best.mean.tolist(),
            "contrast": best.contrast.tolist(),
        },
    }
    if not usable(best):
        out["correlations"] = None
        out["note"] = (
            f"{int(best.recovered.sum())}/{len(best.recovered)} recovered by the best attack: "
            "no ranking to predict, correlations not reported"
        )
        return out
    quals = {name: q for name, q in {"best": best, **per}.items() if usable(q)}
    out["correlations"] = {
        k: {
            name: score_row(v, quals[name], s.seed, s.n_resamples) if name in quals else None
            for name in ("best", *ATTACKS)
        }
        for k, v in scores.items()
    }
    out["calibration"] = _calibration(scores, best, s.seed)
    return out


def run_setting(s: Setting) -> dict[str, Any]:
    """Train, ship, scan, attack and analyse one setting (see the module docstring)."""
    torch.manual_seed(s.seed)
    xtr, ytr, xte, yte = split()
    t0 = time.perf_counter()
    model = shipped(s, train(s, xtr, ytr))
    train_s = time.perf_counter() - t0
    pos = draw(s, len(yte))
    x, y = xte[pos], yte[pos]
    t0 = time.perf_counter()
    res = _scan(model, x, y, s)
    scan_s = time.perf_counter() - t0
    scores = {k: res.scores[k].float() for k in ALL_SCORES}
    result = _attack(model, x, y, scores, s)
    return {
        "setting": s.to_dict(),
        "train_accuracy": accuracy(model.float(), xtr, ytr),
        "test_accuracy": accuracy(model.float(), xte, yte),
        "test_positions": pos.tolist(),
        "converged": float(res.diagnostics["converged"].double().mean()),
        "seconds": {"train": train_s, "scan": scan_s} | dict(result.seconds),
    } | _analyse(result, s)
