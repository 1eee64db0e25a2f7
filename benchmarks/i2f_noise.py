"""How well does I²F predict a real attack's error under Gaussian noise, and why the scale gap?

    python benchmarks/i2f_noise.py --out benchmarks/results/i2f_noise      # ≈ 5 CPU-min
    python benchmarks/i2f_noise.py --quick --out /tmp/i2f_noise             # pipeline check

Two trained MLPs (Flatten → Linear(d, 32) → ReLU → Linear(32, C)): the shipped
``sample_configs/digits_mlp.safetensors`` (the trained-model study's ``mlp-s0``, 8×8 digits,
d = 64) and the same architecture trained on 8×8 RGB photo patches labelled by source
photo (d = 192). For each σ of a sweep, every held-out sample's gradient gets Gaussian
noise δ ~ N(0, σ²I) and is attacked by Inverting Gradients (``fast``: 200 Adam steps, the
study's attack). Per sample it records, all as ‖x̂ − x*‖ in input units:

* ``i2f``: leakaudit's score at that σ (√E‖(JᵀJ + εI)⁻¹Jᵀδ‖², ε = 1e-3·λ_max): the prediction;
* ``undamped``: √tr((JᵀJ)⁻¹)·σ, the same first-order expectation without the damping;
* ``oracle``: the L2 gradient-matching minimiser started AT the truth (L-BFGS, float64):
  the best reconstruction the noise allows, without optimisation error or prior;
* ``ig``: what Inverting Gradients reached from a random start.

The ratios ig / i2f, oracle / i2f and ig / oracle split the gap into the first-order model
(+ its damping) and the attack's own error. Finally it asks whether calibration's isotonic
map absorbs the scale: the PSNR I²F implies (10·log10(d / i2f²) for [0, 1] images) against
the held-out PSNR of an isotonic map fitted on −log i2f (4-fold). See docs/reproduction.md,
"I²F's scale under noise".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.func import jacrev

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._data import photo_patches  # noqa: E402
from benchmarks.trained_study_setup import Setting, split, train  # noqa: E402
from leakaudit.attacks import attack_config, run_attack  # noqa: E402
from leakaudit.attacks.objective import make_per_sample_grads  # noqa: E402
from leakaudit.attacks.space import InputSpace  # noqa: E402
from leakaudit.calibration.crossval import folds, spearman  # noqa: E402
from leakaudit.calibration.monotone import MonotoneMap  # noqa: E402
from leakaudit.calibration.recovery import recovery  # noqa: E402
from leakaudit.defenses import GaussianNoise  # noqa: E402
from leakaudit.scores.engine import score_samples  # noqa: E402
from leakaudit.scores.options import ScoreOptions  # noqa: E402

DAMPING = 1e-3  # leakaudit's default relative damping


def mlp(d: int, classes: int) -> nn.Module:
    """The study's MLP for inputs of ``d`` values."""
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, classes))


def digits_case(n: int) -> tuple[nn.Module, Tensor, Tensor]:
    """The shipped sample model and the first ``n`` digits of the study's test split."""
    model = mlp(64, 10)
    model.load_state_dict(load_file(str(ROOT / "sample_configs/digits_mlp.safetensors")))
    _, _, xte, yte = split()
    return model.eval(), xte[:n], yte[:n]


def photos_case(n: int) -> tuple[nn.Module, Tensor, Tensor]:
    """The MLP trained (as the study trains, seed 0) on 1200 8×8 RGB photo patches;
    ``n`` other patches (another draw) to attack."""
    xtr, ytr = photo_patches(1200, size=8, seed=0)
    xte, yte = photo_patches(n, size=8, seed=1)
    setting = Setting("mlp", 0, n=n, sigma=0.0, idlg_iters=0, ig_iters=0)
    torch.manual_seed(setting.seed)
    model = train(setting, xtr, ytr, model=mlp(3 * 64, 6))
    acc = float((model(xte).argmax(1) == yte).double().mean())
    print(f"[i2f_noise] photos MLP test accuracy {acc:.2f}", file=sys.stderr)
    return model, xte, yte


def spectra(model: nn.Module, x: Tensor, y: Tensor, classes: int) -> list[Tensor]:
    """Per sample the dense Jacobian J = ∂g/∂x ``[P, d]`` (float64)."""
    grads = make_per_sample_grads(model.double())
    out = []
    for xi, yi in zip(x.double(), y, strict=True):
        onehot = F.one_hot(yi, classes).double()[None]
        jac = jacrev(lambda v: grads(v[None], onehot)[0])(xi)  # noqa: B023
        out.append(jac.reshape(jac.shape[0], -1))
    model.float()
    return out


def first_order(jacs: list[Tensor]) -> dict[str, np.ndarray]:
    """Per sample at σ = 1: the damped I²F, the undamped √tr(A⁻¹), and how many of A's
    eigenvalues fall below the damping ε (A = JᵀJ)."""
    damped, undamped, below = [], [], []
    for jac in jacs:
        lam = torch.linalg.eigvalsh(jac.T @ jac).clamp_min(0)
        eps = DAMPING * lam.max()
        damped.append(float((lam / (lam + eps) ** 2).sum().sqrt()))
        pos = lam[lam > lam.max() * 1e-14]
        undamped.append(float((1 / pos).sum().sqrt()))
        below.append(int((lam < eps).sum()))
    return {"damped": np.array(damped), "undamped": np.array(undamped), "below": np.array(below)}


def _match_from_truth(grads: Any, xi: Tensor, onehot: Tensor, gi: Tensor) -> Tensor:
    """One sample: minimise ‖g(v) − gi‖² / ‖gi‖² by L-BFGS from v = xi (float64)."""
    v = xi.flatten().clone().requires_grad_(True)  # flat: LBFGS needs a contiguous grad
    opt = torch.optim.LBFGS(
        [v], max_iter=200, tolerance_grad=1e-14, tolerance_change=1e-16,
        line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> Tensor:
        opt.zero_grad()
        loss = (grads(v.view(1, *xi.shape), onehot)[0] - gi).pow(2).sum() / gi.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return v.detach().view(xi.shape)


def oracle(model: nn.Module, x: Tensor, y: Tensor, goal: Tensor, classes: int) -> Tensor:
    """Per sample the L2 gradient-matching minimiser started at the truth (float64)."""
    grads = make_per_sample_grads(model.double())
    out = [
        _match_from_truth(grads, xi, F.one_hot(yi, classes).double()[None], gi)
        for xi, yi, gi in zip(x.double(), y, goal.double(), strict=True)
    ]
    model.float()
    return torch.stack(out).float()


def error(x_hat: Tensor, x: Tensor) -> np.ndarray:
    """‖x̂ − x*‖ per sample."""
    return (x_hat - x).flatten(1).norm(dim=1).double().numpy()


def heldout_scale(i2f: np.ndarray, psnr: np.ndarray, d: int) -> dict[str, float]:
    """Median |error| (dB) of the PSNR I²F implies, and of a 4-fold isotonic map on it."""
    implied = 10 * np.log10(d / np.maximum(i2f, 1e-300) ** 2)
    pred = np.full_like(psnr, np.nan)
    feature = -np.log(i2f)
    for held in folds(len(psnr), 4, 0):
        train_idx = np.setdiff1d(np.arange(len(psnr)), held)
        pred[held] = MonotoneMap.fit(feature[train_idx], psnr[train_idx])(feature[held])
    return {
        "implied_abs_err_db": float(np.median(np.abs(implied - psnr))),
        "implied_bias_db": float(np.median(implied - psnr)),
        "isotonic_abs_err_db": float(np.nanmedian(np.abs(pred - psnr))),
        "spearman_implied": spearman(implied, psnr),
        "spearman_isotonic": spearman(pred, psnr),
    }


def run_sigma(case: dict[str, Any], sigma: float, seed: int) -> dict[str, Any]:
    """Noise at ``sigma``, IG and the oracle, and the ratios (see the module docstring)."""
    model, x, y, classes = case["model"], case["x"], case["y"], case["classes"]
    d = x[0].numel()
    g_star = make_per_sample_grads(model)(x, F.one_hot(y, classes).float()).detach()
    gen = torch.Generator().manual_seed(seed)
    goal = g_star + sigma * torch.randn(g_star.shape, generator=gen)
    cfg = attack_config("ig", "fast", restarts=1)
    res = run_attack("ig", model, goal, input_shape=tuple(x.shape[1:]), num_classes=classes,
                     space=InputSpace(), labels=y, config=cfg, seed=seed)  # fmt: skip
    rec = recovery(res.reconstruction.numpy(), x.numpy())
    ig = error(res.reconstruction, x)
    orc = error(oracle(model, x, y, goal, classes), x)
    i2f = sigma * case["i2f_unit"]
    ok = rec.recovered
    row: dict[str, Any] = {"sigma": sigma, "n": len(y), "d": d, "recovered": int(ok.sum()),
                           "psnr_median": float(np.median(rec.psnr_db))}  # fmt: skip
    ratios = {
        "ig/i2f": ig / i2f,
        "oracle/i2f": orc / i2f,
        "undamped/i2f": case["undamped"] / case["damped"],
        "oracle/undamped": orc / (sigma * case["undamped"]),
        "ig/oracle": ig / orc,
    }
    for name, r in ratios.items():
        row[name] = [float(np.median(r[ok])), float(np.median(r))] if ok.any() else None
    row["rho_recovered"] = spearman(i2f[ok], ig[ok]) if ok.sum() >= 5 else None
    row["rho_all"] = spearman(i2f, ig)
    row["rho_oracle"] = spearman(i2f, orc)
    row["scale"] = heldout_scale(i2f, rec.psnr_db, d)
    row["samples"] = {"i2f": i2f.tolist(), "ig": ig.tolist(), "oracle": orc.tolist(),
                      "psnr": rec.psnr_db.tolist(), "recovered": ok.tolist()}  # fmt: skip
    return row


def prepare(name: str, n: int) -> dict[str, Any]:
    """Model, samples, I²F from the engine and the dense first-order terms."""
    model, x, y = digits_case(n) if name == "digits" else photos_case(n)
    classes = 10 if name == "digits" else 6
    opts = ScoreOptions(scores=("i2f",), defense=GaussianNoise(1.0), dtype=torch.float64,
                        device="cpu", n_probes=64)  # fmt: skip
    unit = score_samples(model.double(), (x.double(), y), opts).scores["i2f"].double().numpy()
    model.float()
    dense = first_order(spectra(model, x, y, classes))
    agree = float(np.max(np.abs(unit / dense["damped"] - 1)))
    print(f"[i2f_noise] {name}: engine i2f vs dense, max rel. diff {agree:.3g}", file=sys.stderr)
    return {"model": model, "x": x, "y": y, "classes": classes, "i2f_unit": unit,
            "engine_vs_dense": agree, **dense}  # fmt: skip


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of the docs."""
    cols = (
        "data (d)", "σ", "recovered", "IG / I²F", "undamped / I²F", "oracle / undamped",
        "IG / oracle", "ρ(I²F, IG err)", "PSNR from I²F: bias, \\|err\\|", "isotonic \\|err\\|",
    )  # fmt: skip
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)
    lines = [head]
    for r in rows:

        def med(key: str) -> str:
            return "–" if r[key] is None else f"{r[key][0]:.2f}"  # noqa: B023

        rho = "–" if r["rho_recovered"] is None else f"{r['rho_recovered']:+.2f}"
        s = r["scale"]
        lines.append(
            f"| {r['data']} ({r['d']}) | {r['sigma']:g} | {r['recovered']}/{r['n']} | "
            f"{med('ig/i2f')} | {med('undamped/i2f')} | {med('oracle/undamped')} | "
            f"{med('ig/oracle')} | {rho} | "
            f"{s['implied_bias_db']:+.1f} dB, {s['implied_abs_err_db']:.1f} dB | "
            f"{s['isotonic_abs_err_db']:.1f} dB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 samples, one σ")
    parser.add_argument("--out", default="i2f-noise-out")
    parser.add_argument("--n", type=int, default=64)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    n = 8 if args.quick else args.n
    sigmas = {"digits": (1e-3, 3e-3, 1e-2), "photos": (1e-3, 3e-3, 1e-2)}
    rows, meta = [], {}
    for name, sweep in sigmas.items():
        case = prepare(name, n)
        gap = float(np.median(case["undamped"] / case["damped"]))
        meta[name] = {
            "engine_vs_dense": case["engine_vs_dense"],
            "below_eps_median": float(np.median(case["below"])),
            "undamped_over_damped_median": gap,
        }
        for k, sigma in enumerate(sweep[:1] if args.quick else sweep):
            rows.append({"data": name} | run_sigma(case, sigma, seed=k))
            print(f"[i2f_noise] {name} σ={sigma:g} done", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "i2f_noise.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    text = table(rows) + "\n\n" + json.dumps(meta, indent=1)
    (out / "i2f_noise.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
