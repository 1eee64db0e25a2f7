"""The default ``leakaudit scan`` against an older leakaudit, in one run (issue 11).

Two cases, each scanned with the DEFAULT command line (no ``--scores``):

* ``demo``: ``leakaudit scan --demo`` (LeNet on 100 scikit-learn digits; its gate rule
  reads ``i2f``, so the default computes ``grad_norm`` and ``i2f``);
* ``imagefolder``: 48 RGB 32×32 crops of scikit-image's sample photographs in 4 class
  folders (one photograph each), scanned with a LeNet trained a few steps on them and
  saved as a safetensors checkpoint (no gate rule: the default computes ``grad_norm``).

Old and new run alternately (old, new, old, new, ...) as subprocesses with
``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` set to ``--threads``; the medians of the rounds
are compared. Two times are printed per run: the scan time the report states
(``summary.seconds``: loading the model and data, scoring, building the report) and the
wall time of the whole process (Python and torch start-up included, about the same for
both). PASS/FAIL compares the scan time's ratio with ``--target`` (5×). The load
average is printed with the figures: on a loaded machine they are noisy.

The old tree is ``--old`` (default ``/tmp/oldmain``, made with
``git worktree add /tmp/oldmain 106b4c2`` when missing). As a check that the speed-up
changes no number, the new report's ``grad_norm`` and ranking must equal the old one's.

Usage::

    python benchmarks/scan_speed.py --threads 1 --rounds 3
    python benchmarks/scan_speed.py --threads 2 --rounds 3 --only demo
    python benchmarks/scan_speed.py --quick --old .   # smoke test: this tree against itself
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._data import PHOTOS  # noqa: E402

OLD_REF = "106b4c2"
CLASSES = 4


def image_folder(folder: Path, n: int, size: int = 32, seed: int = 0) -> None:
    """``n`` crops of the first :data:`CLASSES` sample photographs as PNGs, one class each."""
    from PIL import Image
    from skimage import data as skdata
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    for label, name in enumerate(PHOTOS[:CLASSES]):
        photo = resize(getattr(skdata, name)(), (256, 256), anti_aliasing=True)[..., :3]
        if photo.ndim == 2:
            photo = np.repeat(photo[..., None], 3, axis=2)
        (folder / name).mkdir(parents=True, exist_ok=True)
        for k in range(label, n, CLASSES):
            r, c = rng.integers(0, 256 - size, size=2)
            crop = (photo[r : r + size, c : c + size] * 255).round().astype(np.uint8)
            Image.fromarray(crop).save(folder / name / f"crop_{k:03d}.png")


def train_checkpoint(folder: Path, path: Path, steps: int = 30) -> None:
    """A LeNet trained ``steps`` SGD steps on the folder's images, saved as safetensors."""
    from safetensors.torch import save_file

    from leakaudit.io.datasets import load_dataset
    from leakaudit.io.spec import DataSpec
    from leakaudit.models import build_model

    loaded = load_dataset(DataSpec(kind="imagefolder", root=str(folder)), 2**30)
    xs = torch.stack([torch.as_tensor(loaded.dataset[i][0]) for i in range(len(loaded.ids))])
    ys = torch.as_tensor(loaded.labels)
    torch.manual_seed(0)
    model = build_model("lenet", num_classes=CLASSES, in_channels=3, image_size=32, kwargs={})
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xs.float()), ys).backward()
        opt.step()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def scan_once(tree: Path, args: list[str], threads: int, out: Path) -> dict:
    """One default scan with the leakaudit in ``tree``: its times and its report."""
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    cmd = [sys.executable, "-m", "leakaudit", "scan", *args, "--json", str(out), "--no-progress"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=out.parent)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # 1: the gate failed, the scan ran
        raise RuntimeError(f"{' '.join(cmd)} (PYTHONPATH={tree}) failed:\n{proc.stderr}")
    report = json.loads(out.read_text())
    return {"wall": wall, "scan": report["summary"]["seconds"], "report": report}


def same_ranking(old: dict, new: dict) -> bool:
    """Whether both reports rank the samples alike and agree on every ``grad_norm``."""
    a, b = old["samples"], new["samples"]
    return [(s["id"], s["rank"]) for s in a] == [(s["id"], s["rank"]) for s in b] and all(
        np.isclose(x["scores"]["grad_norm"], y["scores"]["grad_norm"], rtol=1e-6, atol=0)
        for x, y in zip(a, b, strict=True)
    )


def bench_case(name: str, args: list[str], old: Path, rounds: int, threads: int, tmp: Path) -> dict:
    """Alternate old and new ``rounds`` times; medians, ratios and the check."""
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    loads = []
    for r in range(rounds):
        for label, tree in (("old", old), ("new", ROOT)):
            loads.append(os.getloadavg()[0])
            runs[label].append(scan_once(tree, args, threads, tmp / f"{name}_{label}_{r}.json"))
    med = {
        label: {k: statistics.median(x[k] for x in rs) for k in ("scan", "wall")}
        for label, rs in runs.items()
    }
    new_report = runs["new"][-1]["report"]
    return {
        "case": name,
        "samples": new_report["summary"]["num_samples"],
        "computed_old": sorted(runs["old"][-1]["report"]["summary"]["scores"]),
        "computed_new": new_report.get("scores", {}).get("computed"),
        "old_scan_s": med["old"]["scan"],
        "new_scan_s": med["new"]["scan"],
        "old_wall_s": med["old"]["wall"],
        "new_wall_s": med["new"]["wall"],
        "scan_ratio": med["old"]["scan"] / med["new"]["scan"],
        "wall_ratio": med["old"]["wall"] / med["new"]["wall"],
        "same_ranking": same_ranking(runs["old"][-1]["report"], new_report),
        "load_min": min(loads),
        "load_max": max(loads),
        # Spread over the rounds: each round's scan times, and its old/new ratio.
        "old_scan_rounds": [x["scan"] for x in runs["old"]],
        "new_scan_rounds": [x["scan"] for x in runs["new"]],
        "scan_ratio_rounds": [o["scan"] / n["scan"] for o, n in zip(runs["old"], runs["new"])],
    }


def print_rows(rows: list[dict], target: float, threads: int, rounds: int) -> None:
    print(f"threads {threads}, medians of {rounds} alternating rounds (old, new, ...)")
    print(
        "| case | samples | new computes | old scan s | new scan s | scan ratio "
        "| old wall s | new wall s | wall ratio | same ranking | load (1-min) | verdict |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|---|")
    for r in rows:
        verdict = "PASS" if r["scan_ratio"] >= target and r["same_ranking"] else "FAIL"
        r["verdict"] = verdict
        print(
            f"| {r['case']} | {r['samples']} | {', '.join(r['computed_new'] or ['?'])} "
            f"| {r['old_scan_s']:.2f} | {r['new_scan_s']:.2f} | {r['scan_ratio']:.1f}× "
            f"| {r['old_wall_s']:.2f} | {r['new_wall_s']:.2f} | {r['wall_ratio']:.1f}× "
            f"| {'yes' if r['same_ranking'] else 'NO'} "
            f"| {r['load_min']:.2f}–{r['load_max']:.2f} | {verdict} (≥ {target:g}× scan) |"
        )
    print("Spread over the rounds (min–max; a ratio's: each round's old/new):")
    for r in rows:
        o, n, q = r["old_scan_rounds"], r["new_scan_rounds"], r["scan_ratio_rounds"]
        print(
            f"  {r['case']}: old scan {min(o):.2f}–{max(o):.2f} s, new scan "
            f"{min(n):.2f}–{max(n):.2f} s, scan ratio {min(q):.1f}–{max(q):.1f}×"
        )


def ensure_old(old: Path) -> Path:
    """The old tree, checked out as a detached worktree of :data:`OLD_REF` when missing."""
    if not (old / "leakaudit").is_dir():
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), OLD_REF], check=True
        )
    return old


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--old", type=Path, default=Path("/tmp/oldmain"), help="the old tree")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, choices=(1, 2), default=1)
    ap.add_argument("--images", type=int, default=48, help="ImageFolder size")
    ap.add_argument("--target", type=float, default=5.0, help="scan-time ratio to PASS")
    ap.add_argument("--quick", action="store_true", help="1 round, 8 images, 10 demo digits")
    ap.add_argument("--only", choices=("demo", "imagefolder"), help="run one case only")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args()
    rounds, n_images = (1, 8) if args.quick else (args.rounds, args.images)
    old = ensure_old(args.old.resolve())
    print(f"old: {old}  new: {ROOT}  torch {torch.__version__}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        image_folder(tmp / "photos", n_images)
        train_checkpoint(tmp / "photos", tmp / "lenet.safetensors")
        demo = ["--demo"] + (["--per-class", "1"] if args.quick else [])
        folder = ["--data", str(tmp / "photos"), "--data-kind", "imagefolder"]
        folder += ["--model", "lenet", "--checkpoint", str(tmp / "lenet.safetensors")]
        rows = [
            bench_case(name, case, old, rounds, args.threads, tmp)
            for name, case in (("demo", demo), ("imagefolder", folder))
            if args.only in (None, name)
        ]
    print_rows(rows, args.target, args.threads, rounds)
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "rounds": rounds, "rows": rows}))


if __name__ == "__main__":
    main()
