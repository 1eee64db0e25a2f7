"""What ``--local-steps E`` costs: the demo's scan settings (``grad_norm`` + ``i2f``, the
demo's defence) on its first N digits, for E = 1, 2, 4, on the exact dense path (the
default for the demo's 64-pixel inputs) and on the Lanczos path (``dense_max_dim: 0``).

Printed per run: Jacobian products per sample (the engine's count), seconds, ms per
product, and the median I²F. The product count is the machine-independent part; the
times depend on the machine's load (the load average is printed).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/local_steps_cost.py --n 8 --steps 1 2 4
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch

from leakaudit.api import load_inputs, score_options
from leakaudit.demo import demo_config
from leakaudit.scores.engine import score_samples


def run(n: int, steps: list[int], lr: float) -> list[dict[str, float]]:
    """One row per (path, E)."""
    cfg = demo_config()
    inputs = load_inputs(cfg)
    pairs = [inputs.dataset[i] for i in range(n)]
    X = torch.stack([x for x, _ in pairs])
    Y = torch.tensor([int(y) for _, y in pairs])
    base = dataclasses.replace(score_options(cfg), scores=("grad_norm", "i2f"), local_lr=lr)
    rows = []
    for path, dense in (("dense", base.dense_max_dim), ("lanczos", 0)):
        for e in steps:
            opts = dataclasses.replace(base, local_steps=e, dense_max_dim=dense)
            score_samples(inputs.model, (X[:1], Y[:1]), opts)  # warm-up, untimed
            start = time.perf_counter()
            res = score_samples(inputs.model, (X, Y), opts)
            seconds = time.perf_counter() - start
            rows.append({"path": path, "E": e, "products_per_sample": res.products / n,
                         "seconds": seconds, "ms_per_product": 1e3 * seconds / res.products,
                         "median_i2f": float(res.scores["i2f"].median())})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="demo digits scored")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--lr", type=float, default=0.1, help="local learning rate η")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}, {torch.get_num_threads()} torch threads")
    print("| path | E | products/sample | seconds | ms/product | median I²F |")
    print("|---|---|---|---|---|---|")
    for r in run(args.n, args.steps, args.lr):
        print(f"| {r['path']} | {r['E']} | {r['products_per_sample']:.0f} | {r['seconds']:.2f} "
              f"| {r['ms_per_product']:.2f} | {r['median_i2f']:.4g} |")  # fmt: skip


if __name__ == "__main__":
    main()
