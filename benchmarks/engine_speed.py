"""Engine throughput against a one-sample-at-a-time reference, measured side by side.

    python benchmarks/engine_speed.py                 # LeNet + ResNet-18, CPU or GPU
    python benchmarks/engine_speed.py --device cuda --lenet-n 2048

For each model it times (1) the reference (benchmarks/reference.py: autograd double
backward + SciPy eigsh on the P-dimensional operator, one sample at a time) computing
λ_max and I²F-lb, (2) leakaudit computing the same two scores at the same tolerance and
probe count, (3) leakaudit's full score set, in ``--rounds`` alternating rounds (the
median of each is reported, with the machine's load average); it prints samples/s, the
ratio, and the agreement of λ_max on the samples both computed.

Machine-independent cost: the number of single-sample Jacobian products (one J·v or one
Jᵀ·u) per sample per score, and the engine's distance to its floor — the time one batched
product takes alone, times the products performed, as a fraction of the scan's time. It
also runs the full score set once with every sample computed at every Lanczos/CG step
(as before the active set) to show what the active set saves. Then it measures peak
memory of a full scan for two dataset sizes, each in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import leakaudit.linalg.cg
import leakaudit.linalg.lanczos
from benchmarks._data import photo_patches
from benchmarks.reference import reference_scores
from leakaudit.defenses import GaussianNoise
from leakaudit.models import build_model
from leakaudit.scores.engine import _Model, resolve_device, score_samples
from leakaudit.scores.options import ScoreOptions, ScoreResult

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


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t, out


def load() -> float:
    """The 1-minute load average (0 where the OS has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def options(device: torch.device, scores: tuple[str, ...] | None = None) -> ScoreOptions:
    """λ_max + I²F-lb at the reference's tolerance, or (``scores=None``) every score."""
    if scores is None:
        return ScoreOptions(defense=GaussianNoise(SIGMA), n_probes=N_PROBES, device=str(device))
    kw = dict(defense=GaussianNoise(SIGMA), n_probes=N_PROBES, tol=TOL, device=str(device))
    return ScoreOptions(scores=scores, **kw)


def bench_model(
    name: str,
    n: int,
    n_ref: int,
    device: torch.device,
    rounds: int = 3,
    *,
    full_set: bool = True,
    max_seconds: float | None = None,
) -> dict:
    """Time the reference, λ_max + I²F-lb and (``full_set``) every score on ``name``, in
    alternating rounds; rounds stop early once ``max_seconds`` have passed (one at least)."""
    model = make_model(name).eval()
    X, Y = photo_patches(n)
    same, full = options(device, ("lavp_l2_max", "i2f_lb")), options(device)
    score_samples(model, (X[:1], Y[:1]), same)  # warm-up (allocator, kernels)
    times, last, loads = _rounds(model, X, Y, n_ref, device, rounds, full_set, max_seconds)
    ref, ours = last["ref"], last["ours"]
    ref_s, ours_s = statistics.median(times["ref"]), statistics.median(times["ours"])
    lam_ref = torch.tensor([r[0] for r in ref], dtype=torch.float64)
    lam_ours = ours.scores["lavp_l2_max"][:n_ref]
    lb_ref = torch.tensor([r[1] for r in ref], dtype=torch.float64)
    lb_ours = ours.scores["i2f_lb"][:n_ref]
    # One product's cost depends on how many vectors share a sample's primal pass: time it
    # at each run's Lanczos shape (1 sequence for λ_max + I²F-lb, probes + cosine for all).
    one_s = seconds_per_product(model, X, Y, full, 1)
    row = {
        "model": name,
        "device": str(device),
        "n": n,
        "n_ref": n_ref,
        "rounds": len(times["ref"]),
        "load": [min(loads), max(loads)],
        "ref_per_s": n_ref / ref_s,
        "ours_per_s": n / ours_s,
        "ratio": (n / ours_s) / (n_ref / ref_s),
        "spread": spread(times, n, n_ref),
        "lam_max_rel_diff": float(((lam_ours - lam_ref).abs() / lam_ref).max()),
        "i2f_lb_rel_diff_median": float(((lb_ours - lb_ref).abs() / lb_ref).median()),
        "i2f_lb_rel_se_median": float((ours.diagnostics["i2f_lb_se"][:n_ref] / lb_ours).median()),
        "seconds_per_product": [one_s],
        "ours_cost": cost(ours, same, ours_s, one_s),
    }
    if full_set:
        full_s, all_scores = statistics.median(times["full"]), last["full"]
        full_product_s = seconds_per_product(model, X, Y, full, N_PROBES + 1)
        row.update(
            full_per_s=n / full_s,
            full_ratio=(n / full_s) / (n_ref / ref_s),
            full_converged=float(all_scores.diagnostics["converged"].double().mean()),
            full_cost=cost(all_scores, full, full_s, full_product_s),
            active_set=active_set_effect(model, X, Y, full, device, len(times["ref"])),
        )
        row["seconds_per_product"].append(full_product_s)
    return row


def _rounds(
    model: torch.nn.Module,
    X: torch.Tensor,
    Y: torch.Tensor,
    n_ref: int,
    device: torch.device,
    rounds: int,
    full_set: bool,
    max_seconds: float | None,
) -> tuple[dict[str, list[float]], dict[str, Any], list[float]]:
    """Alternating rounds (reference, λ_max + I²F-lb, all scores), so load changes hit all
    alike: the seconds of each, the last round's results and the load averages seen."""
    same, full = options(device, ("lavp_l2_max", "i2f_lb")), options(device)
    runs: dict[str, Callable[[], Any]] = {
        "ref": lambda: reference_run(model, X, Y, n_ref),
        "ours": lambda: score_samples(model, (X, Y), same),
    }
    if full_set:
        runs["full"] = lambda: score_samples(model, (X, Y), full)
    times: dict[str, list[float]] = {k: [] for k in runs}
    last: dict[str, Any] = {}
    loads, begin = [load()], time.perf_counter()
    for _ in range(rounds):
        for key, run in runs.items():
            t, last[key] = _timed(run, device)
            times[key].append(t)
        loads.append(load())
        if max_seconds is not None and time.perf_counter() - begin > max_seconds:
            break
    return times, last, loads


def spread(times: dict[str, list[float]], n: int, n_ref: int) -> dict[str, list[float]]:
    """The range (min, max) over the rounds of each rate, and of each round's ratio to the
    reference measured in that same round."""
    out: dict[str, list[float]] = {}
    ref_rates = [n_ref / t for t in times["ref"]]
    out["ref_per_s"] = [min(ref_rates), max(ref_rates)]
    for key in ("ours", "full"):
        if key in times:
            rates = [n / t for t in times[key]]
            ratios = [r / q for r, q in zip(rates, ref_rates)]
            out[f"{key}_per_s"] = [min(rates), max(rates)]
            out[f"{key}_ratio"] = [min(ratios), max(ratios)]
    return out


def reference_run(model: torch.nn.Module, X: torch.Tensor, Y: torch.Tensor, n_ref: int) -> list:
    return [
        reference_scores(model, X[i], Y[i], sigma=SIGMA, n_probes=N_PROBES, tol=TOL, seed=i)
        for i in range(n_ref)
    ]


def seconds_per_product(
    model: torch.nn.Module, X: torch.Tensor, Y: torch.Tensor, opts: ScoreOptions, m: int
) -> float:
    """Seconds per single-sample product, timing one batched Gram product alone.

    The Gram product JᵀJ V on ``V`` ``[b, m, d]`` (b = up to 32 samples of ``X``, m vectors
    each) is 2·b·m products; median of 5 repeats.
    """
    device = resolve_device(opts.device)
    b = min(len(X), 32)
    ops = _Model(model, opts, device).func_ops(X[:b].to(device), Y[:b].to(device))
    V = torch.randn(b, m, ops.dim, dtype=opts.dtype, device=device)
    ops.gram(V)  # warm-up
    reps = [_timed(lambda: ops.gram(V), device)[0] for _ in range(5)]
    return statistics.median(reps) / (2 * b * m)


def cost(result: ScoreResult, opts: ScoreOptions, seconds: float, product_s: float) -> dict:
    """Products per sample per score, and the fraction of the scan spent in products:
    estimated (one batched product timed alone × products performed) and measured (time
    inside the product calls during the scan)."""
    n = len(result.indices)
    return {
        "products": result.products,
        "per_sample_per_score": result.products / n / len(opts.scores),
        "product_fraction": result.products * product_s / seconds,
        "product_fraction_measured": result.product_seconds / result.seconds,
    }


@contextmanager
def every_sample_computed():
    """Lanczos and CG compute every sample at every step, as before the active set."""

    def apply_all(operator: Any, V: torch.Tensor, *_: Any) -> torch.Tensor:
        return operator(V) if callable(operator) else operator @ V

    saved = leakaudit.linalg.lanczos.apply_active, leakaudit.linalg.cg.apply_active
    leakaudit.linalg.lanczos.apply_active = leakaudit.linalg.cg.apply_active = apply_all
    try:
        yield
    finally:
        leakaudit.linalg.lanczos.apply_active, leakaudit.linalg.cg.apply_active = saved


def active_set_effect(
    model: torch.nn.Module,
    X: torch.Tensor,
    Y: torch.Tensor,
    opts: ScoreOptions,
    device: torch.device,
    rounds: int,
) -> dict:
    """Products per sample and seconds (median of alternating rounds) of a full scan
    without and with the active set."""
    seconds: dict[str, list[float]] = {"all": [], "active": []}
    for _ in range(rounds):
        with every_sample_computed():
            t, everyone = _timed(lambda: score_samples(model, (X, Y), opts), device)
        seconds["all"].append(t)
        t, active = _timed(lambda: score_samples(model, (X, Y), opts), device)
        seconds["active"].append(t)
    n = len(X)
    return {
        "all_products_per_sample": everyone.products / n,
        "active_products_per_sample": active.products / n,
        "all_seconds": statistics.median(seconds["all"]),
        "active_seconds": statistics.median(seconds["active"]),
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


def print_speed(rows: list[dict]) -> None:
    """The side-by-side throughput table (medians of the alternating rounds)."""
    for r in rows:
        lo, hi = r["load"]
        print(
            f"{r['model']}: median of {r['rounds']} alternating rounds, "
            f"{torch.get_num_threads()} thread(s), machine load {lo:.2f}–{hi:.2f} (1-min average)"
        )
    print()
    print(
        "| model | device | reference samples/s | leakaudit samples/s (λ_max + I²F-lb) "
        "| ratio | full score set samples/s (× the reference) | max rel. diff λ_max "
        "| I²F-lb rel. diff (median) | I²F-lb rel. SE (median) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        sp = r["spread"]
        full = (
            f"{r['full_per_s']:.3g} [{_range(sp['full_per_s'], '.3g')}] "
            f"({r['full_ratio']:.2f}× [{_range(sp['full_ratio'], '.2f')}])"
            if "full_per_s" in r
            else "—"
        )
        print(
            f"| {r['model']} | {r['device']} "
            f"| {r['ref_per_s']:.3g} [{_range(sp['ref_per_s'], '.3g')}] "
            f"| {r['ours_per_s']:.3g} [{_range(sp['ours_per_s'], '.3g')}] "
            f"| **{r['ratio']:.1f}×** [{_range(sp['ours_ratio'], '.1f')}] | {full} "
            f"| {r['lam_max_rel_diff']:.1e} "
            f"| {r['i2f_lb_rel_diff_median']:.3f} | {r['i2f_lb_rel_se_median']:.3f} |"
        )
    print("Medians over the rounds; [min–max] over the rounds (a ratio's range: per round).")


def _range(pair: list[float], fmt: str) -> str:
    return f"{pair[0]:{fmt}}–{pair[1]:{fmt}}"


def print_targets(rows: list[dict]) -> None:
    """Issue 11's CPU targets, PASS/FAIL: λ_max + I²F-lb ≥ 10× the reference, and the full
    score set at least the reference's rate (the reference computes λ_max + I²F-lb)."""
    print()
    for r in rows:
        checks = [("λ_max + I²F-lb ≥ 10× the reference", r["ratio"], 10.0)]
        if "full_ratio" in r:
            checks.append(("full score set ≥ 1× the reference", r["full_ratio"], 1.0))
        for what, value, target in checks:
            verdict = "PASS" if value >= target else "FAIL"
            key = "ours_ratio" if target == 10.0 else "full_ratio"
            lo, hi = r["spread"][key]
            print(f"{r['model']}: {what}: {value:.2f}× {verdict} (rounds {lo:.2f}–{hi:.2f}×)")


def print_cost(rows: list[dict]) -> None:
    """Machine-independent cost and the distance to the product floor."""
    print()
    print(
        "| model | single-sample products per sample per score (λ_max + I²F-lb / all) "
        "| time in the batched products, estimated / measured in the scan "
        "(λ_max + I²F-lb; all) "
        f"| µs per product (m = 1 / {N_PROBES + 1} vectors) "
        "| all scores, products/sample: every sample each step → active set "
        "| seconds (median) |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "full_cost" not in r:
            o = r["ours_cost"]
            print(
                f"| {r['model']} | {o['per_sample_per_score']:.1f} / — "
                f"| {o['product_fraction']:.0%} / {o['product_fraction_measured']:.0%}; — "
                f"| {1e6 * r['seconds_per_product'][0]:.0f} / — | — | — |"
            )
            continue
        o, f, a = r["ours_cost"], r["full_cost"], r["active_set"]
        print(
            f"| {r['model']} | {o['per_sample_per_score']:.1f} / {f['per_sample_per_score']:.1f} "
            f"| {o['product_fraction']:.0%} / {o['product_fraction_measured']:.0%}; "
            f"{f['product_fraction']:.0%} / {f['product_fraction_measured']:.0%} "
            f"| {1e6 * r['seconds_per_product'][0]:.0f} / {1e6 * r['seconds_per_product'][1]:.0f} "
            f"| {a['all_products_per_sample']:.1f} → {a['active_products_per_sample']:.1f} "
            f"({1 - a['active_products_per_sample'] / a['all_products_per_sample']:.1%} fewer) "
            f"| {a['all_seconds']:.1f} → {a['active_seconds']:.1f} |"
        )


def resnet_row(args: argparse.Namespace, device: torch.device) -> dict:
    """ResNet-18: everything (``--resnet-n``), or bounded by ``--resnet-samples``."""
    if args.resnet_samples is None:
        return bench_model("resnet18", args.resnet_n, args.resnet_ref_n, device, args.rounds)
    n = args.resnet_samples
    return bench_model(
        "resnet18", n, n, device, args.rounds, full_set=False, max_seconds=args.resnet_max_seconds
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--lenet-n", type=int, default=64)
    ap.add_argument("--lenet-ref-n", type=int, default=8)
    ap.add_argument("--resnet-n", type=int, default=8)
    ap.add_argument("--resnet-ref-n", type=int, default=2)
    ap.add_argument(
        "--resnet-samples",
        type=int,
        help="bounded ResNet-18 run: this many samples for leakaudit and the reference, "
        "λ_max + I²F-lb only (no full score set), rounds capped by --resnet-max-seconds",
    )
    ap.add_argument(
        "--resnet-max-seconds",
        type=float,
        default=100.0,
        help="with --resnet-samples: start no new round after this many seconds",
    )
    ap.add_argument("--skip-resnet", action="store_true")
    ap.add_argument("--skip-lenet", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--memory-sizes", type=int, nargs=2, default=(64, 256))
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (median)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    if device.type == "cuda":
        print(torch.cuda.get_device_name())
    rows = []
    if not args.skip_lenet:
        rows.append(bench_model("lenet", args.lenet_n, args.lenet_ref_n, device, args.rounds))
    if not args.skip_resnet:
        rows.append(resnet_row(args, device))
    print_speed(rows)
    print_targets(rows)
    print_cost(rows)
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
