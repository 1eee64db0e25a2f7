"""Train the demo model shipped in ``leakaudit/data``: the DLG LeNet (1 channel, 8×8,
10 classes) on the first 1200 of scikit-learn's digits; report accuracy on the other 597.

Deterministic (fixed seed, 300 full-batch Adam steps on CPU; bitwise-reproducible); about
30 CPU-seconds::

    python scripts/train_demo.py            # writes leakaudit/data/demo_lenet_digits.*
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from leakaudit.demo import DEMO_CHECKPOINT, TRAIN_SIZE, demo_data
from leakaudit.io.checkpoints import sha256_file
from leakaudit.io.datasets import DataSpec, load_dataset
from leakaudit.models import build_model


def tensors(first: int | None, indices: list[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised digits ``[N, 1, 8, 8]`` and labels ``[N]`` the demo scan sees."""
    d = demo_data(first=first, per_class=None) if first else demo_data(per_class=None)
    spec = DataSpec(kind="digits", mean=d.mean, std=d.std, first=first, indices=indices)
    loaded = load_dataset(spec)
    xs = torch.stack([loaded.dataset[i][0] for i in range(len(loaded.ids))])
    return xs, loaded.labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--out", type=Path, default=DEMO_CHECKPOINT)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    X, Y = tensors(TRAIN_SIZE, None)
    Xt, Yt = tensors(None, list(range(TRAIN_SIZE, 1797)))
    model = build_model("lenet", num_classes=10, in_channels=1, image_size=8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(args.epochs):  # full batch: 1200 samples of 64 pixels
        opt.zero_grad()
        F.cross_entropy(model(X), Y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        train_acc = (model(X).argmax(1) == Y).float().mean().item()
        test_acc = (model(Xt).argmax(1) == Yt).float().mean().item()
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(args.out))
    args.out.chmod(0o644)
    meta = {
        "model": "lenet",
        "in_channels": 1,
        "image_size": 8,
        "num_classes": 10,
        "train_samples": TRAIN_SIZE,
        "test_samples": len(Yt),
        "epochs": args.epochs,
        "train_accuracy": round(train_acc, 4),
        "test_accuracy": round(test_acc, 4),
        "sha256": sha256_file(args.out),
    }
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
