"""How batch size changes a real attack's reconstructions and the scores' agreement.

For B in the sweep, the first N digits the demo model trained on are split into batches
of B (dataset order); each batch's mean-loss gradient, plus Gaussian noise (σ = 0.01,
the demo's, unless ``--sigma``), is attacked with Inverting Gradients (leakaudit's own
``ig_attack``, known labels, the whole batch at once), and every sample is scored with
the batch-level engine
(its block of the batch's I²F). The table reports the reconstructions' PSNR (per sample,
at its position in the batch) and Spearman's ρ between the sample's I²F block and its
PSNR (expected negative: a smaller predicted error, a better reconstruction).

The attack and the engine both see a batch as one "sample" through a wrapper whose
single output pair has cross-entropy equal to the batch's mean loss against label 0
(z = (0, softplus⁻¹(L))), so neither needed changes; the gradient is exactly ∇L.

    python benchmarks/batch_sweep.py --n 16 --sizes 1 4 --iterations 300
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from safetensors.torch import load_file
from scipy.stats import spearmanr
from sklearn.datasets import load_digits
from torch import Tensor, nn

from leakaudit.attacks.base import AttackTarget
from leakaudit.attacks.ig import IGConfig, ig_attack
from leakaudit.attacks.space import InputSpace
from leakaudit.defenses import GaussianNoise
from leakaudit.demo import DEMO_CHECKPOINT, DEMO_MEAN, DEMO_STD
from leakaudit.metrics.quality import psnr
from leakaudit.models import build_model
from leakaudit.scores.batches import score_batches
from leakaudit.scores.batching import Batching
from leakaudit.scores.options import ScoreOptions

SIGMA = 0.01


SPACE = InputSpace.from_normalization((DEMO_MEAN,), (DEMO_STD,))


class BatchLoss(nn.Module):
    """``[1, B, 1, 8, 8] -> [1, 2]`` logits whose CE against label 0 is the batch's mean
    CE under its ``labels`` ``[1, B]`` (one batch per attack: the labels are fixed)."""

    def __init__(self, model: nn.Module, labels: Tensor) -> None:
        super().__init__()
        self.model, self.labels = model, labels

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x.flatten(0, 1)).reshape(x.shape[0], x.shape[1], -1)
        labels = self.labels.expand(x.shape[0], -1)
        loss = nn.functional.cross_entropy(out.flatten(0, 1), labels.flatten(), reduction="none")
        mean = loss.reshape(x.shape[0], x.shape[1]).mean(1)
        # softplus⁻¹(L) = L + log(1 − e^{−L}), stable for small and large L.
        z1 = mean + torch.log(-torch.expm1(-mean))
        return torch.stack([torch.zeros_like(z1), z1], dim=1)


def attack_batch(model: nn.Module, xb: Tensor, yb: Tensor, iterations: int, seed: int) -> Tensor:
    """IG on one batch ``xb`` ``[1, B, ...]`` from its noisy mean-loss gradient."""
    net = BatchLoss(model, yb)
    params = list(net.parameters())
    zero = torch.zeros(1, dtype=torch.int64)
    loss = nn.functional.cross_entropy(net(xb), zero)
    flat = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, params)])
    gen = torch.Generator().manual_seed(seed)
    observed = flat + SIGMA * torch.randn(flat.shape, generator=gen, dtype=flat.dtype)
    target = AttackTarget(net, observed[None], tuple(xb.shape[1:]), 2, SPACE, zero, seed=seed)
    return ig_attack(target, IGConfig(iterations=iterations, restarts=1)).reconstruction


def sweep_one(model: nn.Module, x: Tensor, y: Tensor, size: int, iterations: int) -> dict:
    n = len(x) // size * size
    xb, yb = x[:n].reshape(-1, 1, size, *x.shape[1:]), y[:n].reshape(-1, 1, size)
    start = time.perf_counter()
    rec = torch.cat([attack_batch(model, xb[k], yb[k], iterations, k) for k in range(len(xb))])
    seconds = time.perf_counter() - start
    shape = (-1, *x.shape[1:])
    quality = psnr(SPACE.to_unit(rec.reshape(shape)), SPACE.to_unit(x[:n])).numpy()
    opts = ScoreOptions(scores=("i2f",), defense=GaussianNoise(SIGMA), dtype=torch.float64)
    data = torch.utils.data.TensorDataset(x[:n], y[:n])
    blocks = score_batches(model, data, Batching(size, shuffle=False), opts)
    i2f = blocks.per_sample().scores["i2f"].numpy()
    rho = spearmanr(i2f, quality).statistic
    return {"B": size, "n": n, "psnr_median": float(np.median(quality)),
            "psnr_max": float(quality.max()), "rho": float(rho), "seconds": seconds,
            "i2f_median": float(np.median(i2f))}  # fmt: skip


def main() -> None:
    global SIGMA
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--sigma", type=float, default=SIGMA, help="defence noise σ")
    args = parser.parse_args()
    SIGMA = args.sigma
    torch.manual_seed(0)
    model = build_model("lenet", num_classes=10, in_channels=1, image_size=8)
    model.load_state_dict(load_file(str(DEMO_CHECKPOINT)))
    model = model.double().eval()
    digits = load_digits()
    x = (torch.tensor(digits.images[: args.n] / 16.0).unsqueeze(1) - DEMO_MEAN) / DEMO_STD
    y = torch.tensor(digits.target[: args.n])
    print("| B | samples | IG iterations | median PSNR (dB) | best PSNR | median I²F block "
          "| Spearman ρ(I²F, PSNR) | attack s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        r = sweep_one(model, x, y, size, args.iterations)
        rho = "n/a" if math.isnan(r["rho"]) else f"{r['rho']:+.2f}"
        print(f"| {size} | {r['n']} | {args.iterations} | {r['psnr_median']:.1f} | "
              f"{r['psnr_max']:.1f} | {r['i2f_median']:.3g} | {rho} | "
              f"{r['seconds']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
