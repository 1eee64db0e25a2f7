"""Which score predicts gradient-inversion attacks on TRAINED models?

    python benchmarks/trained_study.py --out benchmarks/results/trained   # full study
    python benchmarks/trained_study.py --quick --out /tmp/trained          # pipeline check, < 1 min

For each setting (architecture × seed, see ``trained_study_setup.full_settings``) it
trains the model on scikit-learn's digits (train split), ships it as safetensors, scores
held-out test samples with leakaudit, attacks them with iDLG and Inverting Gradients, and
reports per score the Spearman ρ with the attacks' PSNR (95% bootstrap interval), the
partial ρ controlling for image mean and contrast, and the held-out ρ of the calibration
procedure. Writes one ``setting-<name>.json`` per finished setting (a cut-off run keeps
what it finished), ``trained.md`` and ``trained.json`` to ``--out``, and prints the markdown.
See docs/reproduction.md, "Trained models".
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

from benchmarks.trained_study_setup import Setting, full_settings, quick_settings


def _run_one(args: tuple[Setting, str]) -> dict[str, Any]:
    """Worker: run one setting on one CPU thread and save its JSON."""
    setting, out = args
    import torch

    from benchmarks.trained_study_run import run_setting

    torch.set_num_threads(1)
    start = time.perf_counter()
    res = run_setting(setting)
    res["wall_seconds"] = time.perf_counter() - start
    (Path(out) / f"setting-{setting.name}.json").write_text(json.dumps(res, indent=1))
    print(f"[trained] {setting.name} done in {res['wall_seconds']:.0f} s", file=sys.stderr)
    return res


def _select(
    settings: list[Setting], names: str | None, parser: argparse.ArgumentParser
) -> list[Setting]:
    if not names:
        return settings
    wanted = names.split(",")
    unknown = sorted(set(wanted) - {s.name for s in settings})
    if unknown:
        parser.error(f"unknown setting {unknown[0]!r}")
    return [s for s in settings if s.name in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and budgets")
    parser.add_argument("--out", default="trained-out", help="output folder")
    parser.add_argument("--settings", default=None, help="comma-separated names, e.g. mlp-s0")
    parser.add_argument("--jobs", type=int, default=1, help="settings run in parallel")
    parser.add_argument("--merge", action="store_true", help="tabulate setting-*.json in --out")
    args = parser.parse_args(argv)

    settings = _select(quick_settings() if args.quick else full_settings(), args.settings, parser)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from benchmarks.trained_study_table import report

    work = [(s, str(out)) for s in settings]
    if args.merge:
        files = [out / f"setting-{s.name}.json" for s in settings]
        results = [json.loads(f.read_text()) for f in files if f.exists()]
        if not results:
            parser.error(f"--merge: no setting-*.json in {out}")
    elif args.jobs > 1:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            results = pool.map(_run_one, work, chunksize=1)
    else:
        results = [_run_one(w) for w in work]
    text = report(results)
    (out / "trained.md").write_text(text)
    (out / "trained.json").write_text(
        json.dumps({"quick": args.quick, "settings": results}, indent=1)
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
