"""How batch size changes what real attacks recover, and whether the scores still rank it.

For each model (the demo LeNet as trained, and the same architecture untrained with the
DLG initialisation) and each B, ``leakaudit.api.validate(..., batch_size=B)`` runs: the
first N digits are batched as ``scan --batch-size B`` batches them (seeded shuffle), the
server sees each batch's mean-loss gradient (after the configured defence), and DLG and
Inverting Gradients reconstruct the B inputs jointly (IG given each batch's labels as a
multiset, DLG optimising them); reconstructions are paired with originals by the
assignment that maximises total PSNR. Every attacked batch is attacked (N/B of them).

Printed per model × B × attack: the fraction recovered (PSNR ≥ the 15 dB threshold
``calibrate`` uses), the median PSNR, and Spearman's ρ between each score and PSNR with
its 95% bootstrap interval (``metrics.agreement``, as ``validate`` reports it). The
scores are the batch scan's: ``i2f`` is the sample's block of its batch's I²F, the
other scores are the batch's (shared by its B samples, so they tie within a batch).

    OMP_NUM_THREADS=1 python benchmarks/batch_attack_sweep.py --n 32 --sizes 1 4 16
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

import leakaudit
from leakaudit.calibration.recovery import MIN_PSNR_DB
from leakaudit.config import ScanConfig, with_overrides
from leakaudit.validation import ValidationResult

#: Scores whose agreement with PSNR is printed.
SHOWN = ("i2f", "i2f_lb", "grad_norm", "lavp_gm")


def config(model: str, n: int, sigma: float) -> ScanConfig:
    """The demo's model and digits (the first ``n`` training samples), Gaussian noise σ."""
    base = leakaudit.demo_config()
    base.data = replace(base.data, first=n, per_class=None)
    if model == "untrained":
        base.model = replace(base.model, checkpoint=None, random_init=True, kwargs={"init": "dlg"})
    return with_overrides(base, {"scores.select": "all", "defense.params": {"sigma": sigma}})


def rows(model: str, size: int, result: ValidationResult) -> list[str]:
    """One markdown row per attack."""
    out = []
    for attack, quality in result.quality.items():
        db = quality["psnr"].numpy()
        cells = []
        for score in SHOWN:
            rec = next(
                r for r in result.agreement
                if r.attack == attack and r.score == score and r.metric == "psnr"
            )  # fmt: skip
            rho, ci = rec.spearman.value, rec.spearman.ci95
            cells.append(
                "n/a" if rho is None else f"{rho:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci
                else f"{rho:+.2f}"
            )  # fmt: skip
        recovered = float(np.mean(db >= MIN_PSNR_DB))
        out.append(f"| {model} | {size} | {attack} | {len(db)} | {recovered:.2f} | "
                   f"{np.median(db):.1f} | " + " | ".join(cells) + " |")  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32, help="samples (the first N digits)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--models", nargs="+", default=["untrained", "trained"])
    parser.add_argument("--attacks", default="dlg,ig")
    parser.add_argument("--budget", default="fast")
    parser.add_argument("--sigma", type=float, default=1e-4, help="defence noise σ")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"N = {args.n}, budget {args.budget}, σ = {args.sigma:g}, seed {args.seed}; "
          f"recovered: PSNR ≥ {MIN_PSNR_DB:g} dB\n")  # fmt: skip
    print("| model | B | attack | n | recovered | median PSNR (dB) | "
          + " | ".join(f"ρ({s}, PSNR) [95% CI]" for s in SHOWN) + " |")  # fmt: skip
    print("|---" * (6 + len(SHOWN)) + "|")
    for model in args.models:
        cfg = config(model, args.n, args.sigma)
        for size in args.sizes:
            start = time.perf_counter()
            result = leakaudit.validate(
                cfg, attacks=args.attacks.split(","), budget=args.budget, n_samples=args.n,
                seed=args.seed, device="cpu", batch_size=size,
            )  # fmt: skip
            for row in rows(model, size, result):
                print(row, flush=True)
            print(f"<!-- {model} B={size}: {time.perf_counter() - start:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
