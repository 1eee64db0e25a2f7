"""Accuracy of I²F's trace estimators at default settings against dense float64 truth.

    python benchmarks/i2f_accuracy.py                # demo LeNet + photo-patch LeNet
    python benchmarks/i2f_accuracy.py --n 40 --patch 8

For each model it scores ``--n`` samples with the default options (float32, 8 probes,
all scores), computes the exact ``i2f_lb`` and ``i2f`` from a dense eigendecomposition of
JᵀJ in float64, and prints the median and largest relative error, the Spearman
correlation of the ranking, and single-sample Jacobian products per sample, for

* **old**: the previous estimator read off the same Lanczos run — Hutchinson's tr JᵀJ
  (α₁·d per probe) and stochastic Lanczos quadrature averaged over the 8 probes;
* **new**: the engine's estimator (exact Rayleigh–Ritz on the union of the Krylov spaces
  when it spans the input space, else deflated Hutchinson; ``leakaudit.scores.traces``),

then PASS/FAIL against the targets (median ≤ 1 %, Spearman ≥ 0.98). Models: the embedded
demo LeNet on 8×8 digits (d = 64) and the DLG LeNet (random init) on 3×s×s patches of
scikit-image photographs (d = 3s²).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._data import photo_patches
from leakaudit.defenses import GaussianNoise
from leakaudit.linalg.trace import mean_and_se, quadrature
from leakaudit.scores import chunk as chunk_module
from leakaudit.scores.engine import score_samples
from leakaudit.scores.i2f import damped_gram_filter
from leakaudit.scores.options import ScoreOptions
from leakaudit.scores.traces import krylov_traces

SIGMA = 1.0
TARGET_MEDIAN, TARGET_SPEARMAN = 0.01, 0.98


def dense_truth(model: nn.Module, X: Tensor, Y: Tensor) -> np.ndarray:
    """``[N, 2]`` exact i2f_lb and i2f (σ = 1, ε = 1e-3·λ_max) in float64."""
    model = copy.deepcopy(model).double().eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def g(x: Tensor, y: Tensor) -> Tensor:
        def loss(p: dict[str, Tensor]) -> Tensor:
            out = torch.func.functional_call(model, (p, buffers), (x[None],))
            return nn.functional.cross_entropy(out, y[None])

        return torch.cat([t.reshape(-1) for t in torch.func.grad(loss)(params).values()])

    rows = []
    for x, y in zip(X.double(), Y):
        J = torch.func.jacrev(g)(x, y).reshape(-1, x.numel())
        lam = torch.linalg.eigvalsh(J.T @ J)
        eps = 1e-3 * lam[-1]
        lam = lam.clamp_min(0)
        i2f = (lam / (lam + eps) ** 2).sum().sqrt()
        rows.append((float(lam.sum().sqrt() / lam[-1]), float(i2f)))
    return np.array(rows)


class OldEstimator:
    """Wraps the engine's trace step: records the old estimates from the same run and the
    products the new estimator spends beyond the Lanczos run."""

    def __init__(self) -> None:
        self.tr: list[Tensor] = []
        self.q: list[Tensor] = []
        self.extra = 0

    def __call__(self, ops, indices, options, run, l2, top, purpose):  # type: ignore[no-untyped-def]
        d = ops.dim
        exact = options.n_probes >= d
        self.tr.append(mean_and_se(d * run.alpha[:, l2, 0], exact)[0].cpu())
        ritz = run.ritz()
        lam = ritz.values[:, l2, -1].max(-1).values
        f = damped_gram_filter(options.damping * lam)
        q = quadrature(ritz.values[:, l2], ritz.first[:, l2], d, f)
        self.q.append(mean_and_se(q, exact)[0].cpu())
        before = ops.products.n
        out = krylov_traces(ops, indices, options, run, l2, top, purpose)
        self.extra += ops.products.n - before
        return out


def measure(name: str, model: nn.Module, X: Tensor, Y: Tensor) -> bool:
    truth = dense_truth(model, X, Y)
    old = OldEstimator()
    original = chunk_module.krylov_traces
    chunk_module.krylov_traces = old  # type: ignore[assignment]
    try:
        res = score_samples(model, (X, Y), ScoreOptions(defense=GaussianNoise(SIGMA)))
    finally:
        chunk_module.krylov_traces = original
    n = len(X)
    lam = res.scores["lavp_l2_max"].numpy() / 2
    old_lb = torch.cat(old.tr).double().clamp_min(0).sqrt().numpy() / lam
    old_i2f = torch.cat(old.q).double().clamp_min(0).sqrt().numpy()
    new = {"i2f_lb": res.scores["i2f_lb"].numpy(), "i2f": res.scores["i2f"].numpy()}
    products = {"old": (res.products - old.extra) / n, "new": res.products / n}
    ok = True
    print(f"\n{name}: d = {X[0].numel()}, {n} samples, default options (float32, 8 probes)")
    head = f"{'score':8} {'estimator':9} {'median rel':>10} {'max rel':>8} {'Spearman':>8}"
    print(f"{head}  products/sample")
    for col, key in enumerate(("i2f_lb", "i2f")):
        for label, est in (("old", old_lb if col == 0 else old_i2f), ("new", new[key])):
            rel = np.abs(est - truth[:, col]) / truth[:, col]
            rho = float(spearmanr(est, truth[:, col])[0])
            passed = np.median(rel) <= TARGET_MEDIAN and rho >= TARGET_SPEARMAN
            if label == "new":
                ok &= bool(passed)
            print(
                f"{key:8} {label:9} {np.median(rel):10.2e} {rel.max():8.2e} {rho:8.3f}  "
                f"{products[label]:7.1f}  {'PASS' if passed else 'FAIL'}"
            )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="samples per model")
    parser.add_argument("--patch", type=int, default=8, help="photo patch side s (d = 3s²)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from leakaudit.api import load_inputs
    from leakaudit.demo import demo_config
    from leakaudit.models.lenet import LeNet

    inputs = load_inputs(demo_config())
    ds = inputs.dataset
    X = torch.stack([ds[i][0] for i in range(args.n)])
    Y = torch.tensor([int(ds[i][1]) for i in range(args.n)])
    ok = measure("demo LeNet, 8×8 digits", inputs.model, X, Y)
    torch.manual_seed(0)
    model = LeNet(num_classes=6, in_channels=3, image_size=args.patch)
    Xp, Yp = photo_patches(args.n, size=args.patch)
    ok &= measure(f"LeNet (random init), 3×{args.patch}×{args.patch} photo patches", model, Xp, Yp)
    print("\nPASS" if ok else "\nFAIL")


if __name__ == "__main__":
    main()
