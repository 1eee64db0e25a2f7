"""Train the sample model shipped in ``sample_configs/``: the trained-model study's MLP
(``mlp-s0``: Flatten → Linear(64, 32) → ReLU → Linear(32, 10)) on the train split of
scikit-learn's 8×8 digits, and write the client config that scans held-out test digits.

Deterministic (seed 0, one torch thread, 40 epochs of Adam, batch 32: the study's
``benchmarks.trained_study_setup.train``); a few CPU-seconds::

    python scripts/train_digits_mlp.py      # writes sample_configs/digits_mlp.{safetensors,json}

``leakaudit calibrate --config sample_configs/digits_mlp.yaml`` then attacks part of the
held-out digits it scans (docs/calibration.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.trained_study_setup import TEST_FRACTION, Setting, accuracy, split, train  # noqa: E402
from leakaudit.io.checkpoints import sha256_file  # noqa: E402

#: Where the checkpoint goes (its architecture is ``digits_mlp.py:build`` beside it).
CHECKPOINT = ROOT / "sample_configs" / "digits_mlp.safetensors"

#: Held-out test digits the sample config scans (the first of the study's test split).
POOL = 64


def test_positions() -> list[int]:
    """The study's test split as positions in ``load_digits()`` (the same split as
    :func:`benchmarks.trained_study_setup.split`)."""
    target = load_digits().target
    _, test = train_test_split(
        np.arange(len(target)), test_size=TEST_FRACTION, random_state=0, stratify=target
    )
    return [int(i) for i in test]


def trained() -> tuple[torch.nn.Module, float]:
    """The study's ``mlp-s0`` trained on one thread, and its test accuracy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the study trained on one thread: bitwise the same weights
    try:
        xtr, ytr, xte, yte = split()
        model = train(Setting("mlp", 0, n=POOL, sigma=0.0, idlg_iters=0, ig_iters=0), xtr, ytr)
    finally:
        torch.set_num_threads(threads)
    return model, accuracy(model, xte, yte)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=CHECKPOINT)
    args = parser.parse_args()
    model, test_acc = trained()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(args.out))
    args.out.chmod(0o644)
    meta = {
        "model": "digits_mlp.py:build",
        "study_setting": "mlp-s0",
        "train_samples": 1797 - len(test_positions()),
        "test_accuracy": round(test_acc, 4),
        "sha256": sha256_file(args.out),
    }
    args.out.with_suffix(".json").write_text(json.dumps(meta) + "\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
