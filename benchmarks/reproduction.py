"""Reproduce the LAVP and I²F papers' central claims on real data with leakaudit.

    python benchmarks/reproduction.py                  # full study (~40 min, 2 CPU cores)
    python benchmarks/reproduction.py --quick --out /tmp/repro   # pipeline check, < 1 min

For each setting (DLG LeNet and ResNet-20 × scikit-learn digits and scikit-image photo
patches) it scores every sample with leakaudit, attacks every sample with iDLG and
Inverting Gradients undefended and with iDLG under Gaussian noise sized from I²F, and
tabulates Spearman ρ (95% bootstrap interval) between each score and the reconstruction
MSE. Writes ``reproduction.md``, ``reproduction.json`` and one ``setting-<name>.json``
per finished setting (so a cut-off run keeps what it finished) to ``--out``, and prints
the markdown. See docs/reproduction.md for the setup and the results.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.reproduction_setup import (
    Setting,
    full_settings,
    quick_settings,
)


def _run_one(args: tuple[Setting, str, int]) -> dict[str, Any]:
    """Worker: run one setting on ``threads`` CPU threads and save its JSON."""
    setting, out, threads = args
    import torch

    from benchmarks.reproduction_run import run_setting

    torch.set_num_threads(threads)
    start = time.perf_counter()
    res = run_setting(setting)
    res["wall_seconds"] = time.perf_counter() - start
    path = Path(out) / f"setting-{setting.name}.json"
    path.write_text(json.dumps(res, indent=1))
    print(f"[reproduction] {setting.name} done in {res['wall_seconds']:.0f} s", file=sys.stderr)
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and budgets")
    parser.add_argument("--out", default="reproduction-out", help="output folder")
    parser.add_argument("--n", type=int, default=None, help="samples per setting")
    parser.add_argument("--settings", default=None, help="comma-separated names, e.g. lenet-digits")
    parser.add_argument("--jobs", type=int, default=1, help="settings run in parallel")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="run nothing: tabulate the setting-*.json files already in --out",
    )
    args = parser.parse_args(argv)

    settings = quick_settings(args.n or 6) if args.quick else full_settings(args.n or 100)
    if args.settings:
        wanted = args.settings.split(",")
        unknown = sorted(set(wanted) - {s.name for s in settings})
        if unknown:
            parser.error(f"unknown setting {unknown[0]!r}")
        settings = [s for s in settings if s.name in wanted]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from benchmarks.reproduction_table import report

    start = time.perf_counter()
    work = [(s, str(out), args.threads) for s in settings]
    if args.merge:
        files = [out / f"setting-{s.name}.json" for s in settings]
        results = [json.loads(f.read_text()) for f in files if f.exists()]
        if not results:
            parser.error(f"--merge: no setting-*.json in {out}")
    elif args.jobs > 1:
        # The costliest settings (ResNet-20) first, so the pool finishes together.
        order = sorted(range(len(work)), key=lambda i: work[i][0].arch != "resnet20")
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            done = pool.map(_run_one, [work[i] for i in order], chunksize=1)
        results = [done[order.index(i)] for i in range(len(work))]
    else:
        results = [_run_one(w) for w in work]
    wall = time.perf_counter() - start
    if args.merge:  # the settings' own wall times (they may have run in parallel)
        wall = sum(r.get("wall_seconds", r["seconds"]["total"]) for r in results)

    text = report(results, wall, merged=args.merge)
    (out / "reproduction.md").write_text(text)
    (out / "reproduction.json").write_text(
        json.dumps({"wall_seconds": wall, "quick": args.quick, "settings": results}, indent=1)
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
