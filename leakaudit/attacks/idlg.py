"""Improved DLG (Zhao, Mopuri & Bilen 2020): read the label off the gradient first.

For cross-entropy and a final linear layer z = W h + b, a single sample's gradient is
∂ℓ/∂W = (softmax(z) − e_y) hᵀ. Only the true class has a negative factor
softmax(z)_y − 1 < 0, so when the penultimate activations h are non-negative (sigmoid,
ReLU) the true class's row of ∂ℓ/∂W is the only one with a non-positive sum. iDLG
takes the row with the smallest sum, then runs DLG's L2 matching with that label
fixed.
"""

from __future__ import annotations

from torch import Tensor, nn

from leakaudit.attacks.base import AttackResult, AttackTarget, Progress
from leakaudit.attacks.dlg import DLGConfig, l2_matching_attack


def last_linear_weight_slice(model: nn.Module, num_classes: int) -> tuple[int, int, int]:
    """Where the last fully connected layer's weight sits in the flat gradient.

    Args:
        model: the client's model; its last ``nn.Linear`` must output ``num_classes``.
        num_classes: C.

    Returns:
        ``(start, rows, cols)``: the weight gradient is
        ``flat[start : start + rows * cols].view(rows, cols)``.

    Raises:
        ValueError: the model has no final linear layer with C outputs.
    """
    last: nn.Linear | None = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    if last is None or last.out_features != num_classes:
        raise ValueError(
            "iDLG label inference needs a final nn.Linear layer with one output per class"
        )
    offset = 0
    for param in model.parameters():
        if param is last.weight:
            return offset, last.out_features, last.in_features
        offset += param.numel()
    raise ValueError("the final linear layer's weight is not a parameter of the model")


def infer_labels(model: nn.Module, observed: Tensor, num_classes: int) -> Tensor:
    """iDLG's label of each sample: the class whose weight-gradient row sums lowest.

    Args:
        model: the client's model.
        observed: ``[B, P]`` flat per-sample gradients (``named_parameters`` order).
        num_classes: C.

    Returns:
        ``[B]`` int64 labels.
    """
    start, rows, cols = last_linear_weight_slice(model, num_classes)
    weight_grad = observed[:, start : start + rows * cols].reshape(-1, rows, cols)
    return weight_grad.sum(dim=-1).argmin(dim=-1)


def idlg_attack(
    target: AttackTarget, config: DLGConfig | None = None, progress: Progress | None = None
) -> AttackResult:
    """Run iDLG on each row of ``target.observed`` ``[G, P]`` (unboxed, like the reference).

    The label trick reads the one label of a single sample's gradient; on batches
    (``target.group`` > 1) the attacker is given the labels instead (``target.labels``),
    so iDLG is then L2 matching with known labels.

    Returns:
        Reconstructions ``[G·group, *input_shape]`` and the inferred (or given) labels.

    Raises:
        ValueError: a batch target without labels.
    """
    if target.group == 1:
        labels = infer_labels(target.model, target.observed, target.num_classes)
    elif target.labels is None:
        raise ValueError("iDLG on batches needs the batch's labels (its trick reads one)")
    else:
        labels = target.labels.to(target.observed.device).long()
    return l2_matching_attack("idlg", target, labels, config or DLGConfig(), progress)
