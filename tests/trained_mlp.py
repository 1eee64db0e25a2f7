"""A trained MLP on scikit-learn's 8×8 digits, as in the trained-model study
(docs/reproduction.md, "Trained models"; benchmarks/trained_study_setup.py), saved the way a
client ships it, for end-to-end tests of ``leakaudit calibrate``.

This file is also the model factory the CLI loads (``model.name: <this file>:build``).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

#: The study's MLP hidden width.
HIDDEN = 32


def build(num_classes: int = 10, hidden: int = HIDDEN) -> nn.Module:
    """Flatten → Linear(64, hidden) → ReLU → Linear(hidden, num_classes): ``[B, 1, 8, 8]``
    → ``[B, num_classes]`` (the study's ``mlp``; same module names, so its state_dict
    loads)."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
    )


FACTORY = f"{Path(__file__).resolve()}:build"
