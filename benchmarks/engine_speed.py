"""Engine throughput against a one-sample-at-a-time reference, measured side by side.

    python benchmarks/engine_speed.py                 # LeNet + ResNet-18, CPU or GPU
    python benchmarks/engine_speed.py --device cuda --lenet-n 2048

For each model it times (1) the reference (benchmarks/reference.py: autograd double
backward + SciPy eigsh on the P-dimensional operator, one sample at a time) computing
λ_max and I²F-lb, (2) leakaudit computing the same two scores at the same tolerance and
probe count, (3) leakaudit's full score set; it prints samples/s, the ratio, and the
agreement of λ_max on the samples both computed. Then it measures peak memory of a full
scan for two dataset sizes, each in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._data import photo_patches
from benchmarks.reference import reference_scores
from leakaudit.defenses import GaussianNoise
from leakaudit.models import build_model
from leakaudit.scores.engine import resolve_device, score_samples
from leakaudit.scores.options import ScoreOptions

SIGMA = 0.01
N_PROBES = 8
TOL = 1e-4
#: Scores of the memory measurement (the streaming is the same for every selection).
MEMORY_SCORES = ("lavp_l2_max", "lavp_cos_max", "i2f_lb")


def make_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "lenet":
        return build_model(
            "lenet", num_classes=10, in_channels=3, image_size=32, kwargs={"init": "dlg"}
        )
    return build_model("torchvision:resnet18", num_classes=10, in_channels=3, image_size=32)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_model(name: str, n: int, n_ref: int, device: torch.device) -> dict:
    model = make_model(name).eval()
    X, Y = photo_patches(n)
    t = time.perf_counter()
    ref = [
        reference_scores(model, X[i], Y[i], sigma=SIGMA, n_probes=N_PROBES, tol=TOL, seed=i)
        for i in range(n_ref)
    ]
    ref_s = time.perf_counter() - t

    same = ScoreOptions(
        scores=("lavp_l2_max", "i2f_lb"),
        defense=GaussianNoise(SIGMA),
        n_probes=N_PROBES,
        tol=TOL,
        device=str(device),
    )
    score_samples(model, (X[:2], Y[:2]), same)  # warm-up (allocator, kernels)
    sync(device)
    t = time.perf_counter()
    ours = score_samples(model, (X, Y), same)
    sync(device)
    ours_s = time.perf_counter() - t

    full = ScoreOptions(defense=GaussianNoise(SIGMA), n_probes=N_PROBES, device=str(device))
    t = time.perf_counter()
    all_scores = score_samples(model, (X, Y), full)
    sync(device)
    full_s = time.perf_counter() - t

    lam_ref = torch.tensor([r[0] for r in ref], dtype=torch.float64)
    lam_ours = ours.scores["lavp_l2_max"][:n_ref]
    lb_ref = torch.tensor([r[1] for r in ref], dtype=torch.float64)
    lb_ours = ours.scores["i2f_lb"][:n_ref]
    return {
        "model": name,
        "device": str(device),
        "n": n,
        "n_ref": n_ref,
        "ref_per_s": n_ref / ref_s,
        "ours_per_s": n / ours_s,
        "ratio": (n / ours_s) / (n_ref / ref_s),
        "full_per_s": n / full_s,
        "full_converged": float(all_scores.diagnostics["converged"].double().mean()),
        "lam_max_rel_diff": float(((lam_ours - lam_ref).abs() / lam_ref).max()),
        "i2f_lb_rel_diff_median": float(((lb_ours - lb_ref).abs() / lb_ref).median()),
        "i2f_lb_rel_se_median": float((ours.diagnostics["i2f_lb_se"][:n_ref] / lb_ours).median()),
    }


def peak_memory(n: int, device: str) -> float:
    """Peak memory (MiB) of a LeNet scan (``MEMORY_SCORES``) of ``n`` samples in a fresh process:
    the process's max RSS on CPU (torch itself included), max allocated CUDA memory on GPU."""
    code = f"""
import resource, sys, torch
sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
from benchmarks.engine_speed import make_model
from benchmarks._data import photo_patches
from leakaudit.scores.engine import score_samples
from leakaudit.scores.options import ScoreOptions
X, Y = photo_patches({n})
opts = ScoreOptions(scores={MEMORY_SCORES!r}, device={device!r}, chunk_size=32)
res = score_samples(make_model("lenet"), (X, Y), opts)
if torch.cuda.is_available() and {device!r} != "cpu":
    print(torch.cuda.max_memory_allocated() / 2**20)
else:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--lenet-n", type=int, default=64)
    ap.add_argument("--lenet-ref-n", type=int, default=8)
    ap.add_argument("--resnet-n", type=int, default=8)
    ap.add_argument("--resnet-ref-n", type=int, default=2)
    ap.add_argument("--skip-resnet", action="store_true")
    ap.add_argument("--skip-lenet", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--memory-sizes", type=int, nargs=2, default=(64, 256))
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    if device.type == "cuda":
        print(torch.cuda.get_device_name())
    rows = []
    if not args.skip_lenet:
        rows.append(bench_model("lenet", args.lenet_n, args.lenet_ref_n, device))
    if not args.skip_resnet:
        rows.append(bench_model("resnet18", args.resnet_n, args.resnet_ref_n, device))
    print()
    print(
        "| model | device | reference samples/s | leakaudit samples/s (λ_max + I²F-lb) "
        "| ratio | full score set samples/s | max rel. diff λ_max | I²F-lb rel. diff (median) "
        "| I²F-lb rel. SE (median) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['device']} | {r['ref_per_s']:.3g} | {r['ours_per_s']:.3g} "
            f"| **{r['ratio']:.1f}×** | {r['full_per_s']:.3g} | {r['lam_max_rel_diff']:.1e} "
            f"| {r['i2f_lb_rel_diff_median']:.3f} | {r['i2f_lb_rel_se_median']:.3f} |"
        )
    figures: dict = {"rows": rows}
    if not args.skip_memory:
        n1, n2 = args.memory_sizes
        m1, m2 = peak_memory(n1, str(device)), peak_memory(n2, str(device))
        figures["memory_mib"] = {n1: m1, n2: m2}
        print()
        print(
            f"peak memory of a LeNet scan of {', '.join(MEMORY_SCORES)} (chunk 32): "
            f"{n1} samples {m1:.0f} MiB, {n2} samples {m2:.0f} MiB (ratio {m2 / max(m1, 1e-9):.2f})"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
