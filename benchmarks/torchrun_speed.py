"""One process against ``torchrun`` with N ranks, for ``validate``, a batch scan and a
per-sample scan on the shipped demo (LeNet, scikit-learn digits) (issue 13).

Each case runs alternately in one process and under ``torchrun --standalone
--nproc-per-node=N`` (``OMP_NUM_THREADS`` = ``--threads`` per process), ``--rounds``
times; the medians of the wall times (start-up included) are compared, and the per-rank
samples/s of the output's ``distributed`` section are printed. As a check that sharding
changes no number, every torchrun output must equal the single-process one without its
timings. The load average is printed with the figures: on a loaded machine they are
noisy, and a rank needs a free core.

Usage::

    python benchmarks/torchrun_speed.py --ranks 2 --threads 1 --rounds 3
    python benchmarks/torchrun_speed.py --quick   # smoke test: tiny cases, one round
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")


def cases(quick: bool) -> dict[str, list[str]]:
    """Case → the ``leakaudit`` arguments (the output is written to ``out.json``)."""
    n = "16" if quick else "100"
    budget = "fast" if quick else "standard"
    return {
        "validate": ["validate", "--demo", "--first", n, "--attacks", "idlg,ig", "--budget",
                     budget, "--n-samples", "8" if quick else "32", "--json", "out.json"],
        "batch scan": ["scan", "--demo", "--first", n, "--batch-size", "4", "--chunk-size",
                       "1", "--json", "out.json"],
        "scan": ["scan", "--demo", "--first", n, "--chunk-size", "4", "--json", "out.json"],
    }  # fmt: skip


def run(args: list[str], ranks: int, threads: int) -> tuple[float, dict[str, Any]]:
    """Wall seconds and the JSON output of one run (1 rank: no torchrun)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    launcher = [sys.executable, "-m", "leakaudit"]
    if ranks > 1:
        launcher = [str(TORCHRUN), "--standalone", f"--nproc-per-node={ranks}", "-m",
                    "leakaudit"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        done = subprocess.run([*launcher, *args, "--no-progress"], cwd=tmp, env=env,
                              capture_output=True, text=True)  # fmt: skip
        seconds = time.perf_counter() - start
        if done.returncode not in (0, 1):  # 1: the demo's gate failed, the report is there
            sys.exit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
        return seconds, json.loads((Path(tmp) / "out.json").read_text())


def comparable(doc: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The output without its timings, and its ``distributed`` section."""
    if "validation" not in doc:  # a scan report
        return (doc["samples"], doc["risk"]), doc["summary"]["distributed"]
    v = doc["validation"]
    return {k: x for k, x in v.items() if k not in ("seconds", "distributed")}, v["distributed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    opts = parser.parse_args()
    rounds = 1 if opts.quick else opts.rounds
    print(f"load average {os.getloadavg()}; {os.cpu_count()} cores; {opts.ranks} ranks")
    for name, args in cases(opts.quick).items():
        times: dict[int, list[float]] = {1: [], opts.ranks: []}
        for _ in range(rounds):
            one_s, one = run(args, 1, opts.threads)
            many_s, many = run(args, opts.ranks, opts.threads)
            times[1].append(one_s)
            times[opts.ranks].append(many_s)
            (one_cmp, _), (many_cmp, section) = comparable(one), comparable(many)
            if one_cmp != many_cmp:
                sys.exit(f"{name}: the torchrun output differs from the single-process one")
        t1, tn = statistics.median(times[1]), statistics.median(times[opts.ranks])
        per_rank = ", ".join(f"{r['samples_per_second'] or 0:.2f}" for r in section["ranks"])
        print(f"{name}: 1 process {t1:.1f} s, {opts.ranks} ranks {tn:.1f} s "
              f"({t1 / tn:.2f}x); per-rank samples/s {per_rank}; outputs equal")  # fmt: skip
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
