"""Chunk size from a memory budget.

The working set of one sample is dominated by the Lanczos basis (m sequences × k
steps × d), the per-sample parameter-space tangents of the Jacobian products
(a few × m × P), the forward/backward activations (a few × m × activations) and the
retained linearisation the products walk (:mod:`leakaudit.jacobians.func`: measured on
ResNet-18 at about 1.5 P-sized vectors per sample more than recomputing it per product).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from leakaudit.errors import ConfigError
from leakaudit.scores import dense
from leakaudit.scores.options import ScoreOptions
from leakaudit.scores.plan import Plan

#: Never score more than this many samples at once (batching gains flatten out).
MAX_CHUNK = 128


def count_activations(model: nn.Module, forward: Callable[[Tensor], Tensor], x: Tensor) -> int:
    """Elements of every leaf module output of ``model`` for one ``forward(x)`` (one sample)."""
    total = 0
    hooks = []
    # TorchScript modules take no Python hooks: count their output and input only.
    scripted = isinstance(model, torch.jit.ScriptModule)
    modules = [] if scripted else list(model.modules())

    def hook(_m: nn.Module, _i: object, out: object) -> None:
        nonlocal total
        if isinstance(out, Tensor):
            total += out.numel()

    for mod in modules:
        if not list(mod.children()):
            hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = forward(x)
    finally:
        for h in hooks:
            h.remove()
    if scripted:  # unknown internals: assume a few dozen input-sized activations
        return 32 * int(x.numel()) + int(out.numel())
    return max(total, int(out.numel()), int(x.numel()))


def sequences_per_sample(options: ScoreOptions, plan: Plan, d: int) -> int:
    """Vectors per sample in the widest batched product under ``plan``: the Lanczos
    sequences, or the I²F-lb probes when they are applied on their own."""
    m = 0
    if plan.l2:
        m += min(options.n_probes, d) if plan.slq else 1
    if plan.cos:
        m += 1
    if plan.trace and not plan.slq:
        m = max(m, min(options.n_probes, d))
    return max(m, 1)


def choose_chunk_size(
    options: ScoreOptions, plan: Plan, *, d: int, n_params: int, activations: int
) -> int:
    """Largest chunk whose estimated working set fits ``options.memory_budget``.

    Raises:
        ConfigError: the budget is not a positive whole number of bytes.
    """
    budget = options.memory_budget
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"memory_budget: expected a positive number of bytes, got {budget!r}")
    m = sequences_per_sample(options, plan, d)
    k = min(options.max_iter, d)
    itemsize = torch.finfo(options.dtype).bits // 8
    per_sample = itemsize * (
        m * (k + 6) * d + 4 * m * n_params + 8 * m * activations + 4 * n_params + 4 * activations
    )
    if dense.applies(options, plan, d):  # the dense path:
        # J in the working dtype, d products in flight, d × d float64 matrices
        per_sample = itemsize * d * (5 * n_params + 8 * activations) + 8 * 4 * d * d
    return int(max(1, min(MAX_CHUNK, budget // max(per_sample, 1))))
