"""``leakaudit scan --demo`` with the dense path off (``scores.dense_max_dim: 0``, the
Lanczos path) and on (the default), alternating, one process per scan (issue 11).

Each scan is the CLI's default demo scan (``grad_norm`` + ``i2f``, the gate reads
``i2f``) with only ``scores.dense_max_dim`` changed. Printed per run: the scan time the
report states (``summary.seconds``), the process's wall time, and the Jacobian products
per sample the engine counted. The load average is printed too: on a shared machine the
times are noisy.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/dense_speed.py --rounds 3
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

ROOT = Path(__file__).resolve().parent.parent

#: Runs one demo scan in a fresh process with ``scores.dense_max_dim`` = argv[1] and
#: prints the engine's product count and the scanned sample count as JSON on stderr.
CHILD = """
import dataclasses, json, sys
import leakaudit.demo as demo
import leakaudit.scores.engine as engine

dim, out = int(sys.argv[1]), sys.argv[2]
base = demo.demo_config
def patched():
    cfg = base()
    return dataclasses.replace(cfg, scores=dataclasses.replace(cfg.scores, dense_max_dim=dim))
demo.demo_config = patched
seen = {"products": 0, "samples": 0}
concat = engine.concat_results
def counting(parts):
    result = concat(parts)
    seen["products"] += result.products
    seen["samples"] += len(result.indices)
    return result
engine.concat_results = counting
from leakaudit.cli import app
try:
    app(["scan", "--demo", "--json", out, "--no-progress"])
except SystemExit as exc:
    if exc.code not in (0, 1, None):
        raise
finally:
    print(json.dumps(seen), file=sys.stderr)
"""


def scan_once(dim: int, threads: int, out: Path) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(dim), str(out)],
        env=env,
        capture_output=True,
        text=True,
        cwd=out.parent,
    )
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"scan with dense_max_dim={dim} failed:\n{proc.stderr}")
    seen = json.loads(proc.stderr.strip().splitlines()[-1])
    report = json.loads(out.read_text())
    return {
        "scan": report["summary"]["seconds"],
        "wall": wall,
        "products_per_sample": seen["products"] / max(seen["samples"], 1),
        "i2f": [s["scores"]["i2f"] for s in report["samples"]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dense-max-dim", type=int, default=256, help="the 'on' setting")
    args = ap.parse_args()
    runs: dict[int, list[dict]] = {0: [], args.dense_max_dim: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for dim in runs:
                run = scan_once(dim, args.threads, Path(tmp) / f"r{r}_{dim}.json")
                runs[dim].append(run)
                print(
                    f"round {r} dense_max_dim={dim}: scan {run['scan']:.2f} s, wall "
                    f"{run['wall']:.2f} s, {run['products_per_sample']:.0f} products/sample, "
                    f"load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
    off, on = (statistics.median(x["scan"] for x in runs[k]) for k in runs)
    a, b = (runs[k][0]["i2f"] for k in runs)
    worst = max(abs(x - y) / abs(x) for x, y in zip(a, b, strict=True))
    print(f"median scan: off {off:.2f} s, on {on:.2f} s, speed-up {off / on:.2f}x")
    print(f"largest relative i2f difference (Lanczos vs dense): {worst:.2e}")


if __name__ == "__main__":
    main()
