"""The gradient-matching objective shared by every attack.

An attack searches for inputs x̂ whose shared gradient g(x̂) matches the gradient the
server received, g* (+ δ under a defence). Each sample is an independent problem: the
per-sample gradients of a batch of candidates are computed with ``torch.func``
(``vmap`` over ``grad`` of a ``functional_call``), and the result stays differentiable
with respect to the candidates, so a matching loss built on it can be minimised over x̂
by ordinary autograd (the double backward of Zhu et al. 2019).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import vmap

from leakaudit.jacobians.func import make_flat_grad

#: per_sample_grads(inputs [B, ...], soft_targets [B, C]) -> flat gradients [B, P].
PerSampleGrads = Callable[[Tensor, Tensor], Tensor]


def soft_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy against a probability vector (a one-hot target gives the usual CE).

    Args:
        logits: ``[B, C]``.
        target: ``[B, C]`` probabilities.

    Returns:
        The mean over the batch, a scalar.
    """
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def make_per_sample_grads(model: nn.Module) -> PerSampleGrads:
    """Build the map from candidate inputs and soft labels to their flat gradients.

    The model's parameters and buffers are frozen (detached) at the time of the call;
    the model should already be in the mode the client trains with (SPEC: eval).

    Args:
        model: the client's model, logits ``[1, C]`` from an input ``[1, ...]``.

    Returns:
        A function ``(inputs [B, ...], targets [B, C]) -> [B, P]``, the gradient of the
        cross-entropy of each sample alone (batch size 1) with respect to the
        parameters, flattened in ``named_parameters`` order. It is differentiable with
        respect to both arguments.
    """
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    batched: PerSampleGrads = vmap(make_flat_grad(model, params, buffers, soft_cross_entropy))
    return batched


def batch_mean(g: Tensor, group: int) -> Tensor:
    """The gradient of each batch's mean loss from its inputs' gradients.

    The mean loss's gradient is the mean of the per-sample gradients (the model is in
    eval mode: no statistic couples the samples), so consecutive runs of ``group`` rows
    are averaged.

    Args:
        g: ``[G·group, P]`` per-sample gradients, batch by batch.
        group: samples per batch; 1 returns ``g`` itself.

    Returns:
        ``[G, P]``.
    """
    if group == 1:
        return g
    return g.reshape(-1, group, g.shape[-1]).mean(dim=1)


def l2_distance(g: Tensor, target: Tensor) -> Tensor:
    """Squared Euclidean distance ‖g − g*‖² per sample (DLG, iDLG); ``[B, P]`` → ``[B]``."""
    return (g - target).pow(2).sum(dim=-1)


def cosine_distance(g: Tensor, target: Tensor) -> Tensor:
    """1 − cos(g, g*) per sample over the whole flat gradient (Geiping et al. 2020).

    Args:
        g: ``[B, P]`` candidate gradients.
        target: ``[B, P]`` observed gradients.

    Returns:
        ``[B]`` in [0, 2].
    """
    dot = (g * target).sum(dim=-1)
    norms = torch.linalg.vector_norm(g, dim=-1) * torch.linalg.vector_norm(target, dim=-1)
    return 1.0 - dot / norms.clamp_min(torch.finfo(g.dtype).tiny)


def total_variation(x: Tensor) -> Tensor:
    """Anisotropic total variation per image, as in Geiping et al. 2020.

    The mean absolute difference between vertical neighbours plus that between
    horizontal neighbours.

    Args:
        x: ``[B, C, H, W]``.

    Returns:
        ``[B]``.
    """
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(dim=1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(dim=1)
    return dx + dy


def observed_gradients(
    model: nn.Module, inputs: Tensor, labels: Tensor, num_classes: int
) -> Tensor:
    """The clients' true per-sample gradients g*, before any defence.

    Args:
        model: the client's model.
        inputs: ``[B, ...]`` in the model's input space.
        labels: ``[B]`` int64 class indices.
        num_classes: C.

    Returns:
        ``[B, P]``, detached.
    """
    per_sample = make_per_sample_grads(model)
    onehot = F.one_hot(labels.long(), num_classes).to(inputs.dtype)
    with torch.no_grad():
        return per_sample(inputs, onehot).detach()
