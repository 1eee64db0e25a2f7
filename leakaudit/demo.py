"""The embedded demo: the DLG LeNet trained on scikit-learn's 8×8 digits (weights shipped
in ``leakaudit/data``, trained by ``scripts/train_demo.py``), scanned on a balanced set
of its own training samples. ``leakaudit scan --demo`` runs it."""

from __future__ import annotations

from pathlib import Path

from leakaudit.config import (
    DataConfig,
    DefenseConfig,
    GateConfig,
    GateRule,
    ModelConfig,
    ScanConfig,
    ScoresConfig,
)

#: The shipped weights (a safetensors state_dict of ``lenet`` with 1 channel, 8×8, 10 classes).
DEMO_CHECKPOINT = Path(__file__).parent / "data" / "demo_lenet_digits.safetensors"

#: Normalisation of the digits after scaling to [0, 1] (training and scanning agree).
DEMO_MEAN = 0.3
DEMO_STD = 0.4

#: Positions 0..TRAIN_SIZE-1 of the digits are the client's training data; the rest is
#: the held-out test set of ``scripts/train_demo.py``.
TRAIN_SIZE = 1200

#: Training samples scanned per class (10 classes).
DEMO_PER_CLASS = 10


def demo_data(first: int = TRAIN_SIZE, per_class: int | None = DEMO_PER_CLASS) -> DataConfig:
    """The digits as the demo model sees them (1×8×8, normalised)."""
    return DataConfig(
        kind="digits", mean=[DEMO_MEAN], std=[DEMO_STD], first=first, per_class=per_class
    )


def demo_config() -> ScanConfig:
    """The configuration ``leakaudit scan --demo`` runs; flags may override any key."""
    return ScanConfig(
        model=ModelConfig(
            name="lenet",
            num_classes=10,
            in_channels=1,
            image_size=8,
            checkpoint=str(DEMO_CHECKPOINT),
        ),
        data=demo_data(),
        scores=ScoresConfig(),
        defense=DefenseConfig(kind="gaussian", params={"sigma": 0.01}, target_error=1.0),
        gate=GateConfig(rules=[GateRule(score="i2f", threshold=0.05, max_fraction=0.0)]),
    )
