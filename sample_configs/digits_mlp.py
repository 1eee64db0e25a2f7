"""The architecture of ``digits_mlp.safetensors`` (sample_configs/digits_mlp.yaml): a small
MLP trained on scikit-learn's 8×8 digits by ``scripts/train_digits_mlp.py``.

It is the trained-model study's ``mlp`` (docs/reproduction.md, "Trained models"): the
parameter names match its checkpoint, so ``load_state_dict`` works.
"""

from torch import nn

#: Hidden width of the shipped checkpoint.
HIDDEN = 32


def build(num_classes: int = 10, hidden: int = HIDDEN) -> nn.Module:
    """Flatten → Linear(64, hidden) → ReLU → Linear(hidden, num_classes):
    ``[B, 1, 8, 8]`` in [0, 1] → ``[B, num_classes]`` logits."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
    )
