"""Options and results of the scoring engine: the contract between the engine, the
Python API, the CLI and the report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from leakaudit.defenses import Defense, GaussianNoise
from leakaudit.scores.names import ALL_SCORES, validate_score_names

#: loss(logits [1, C], target [1]) -> scalar. Cross-entropy (in the cancellation-free
#: form of :func:`leakaudit.scores.losses.stable_cross_entropy`) when not given.
LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class ScoreOptions:
    """How to score samples.

    Attributes:
        scores: which scores to compute (SPEC names); only their work is done.
        defense: the client's defence, used by ``i2f`` and ``i2f_lb``.
        max_iter: Lanczos steps at most per operator (capped at the input dimension d).
        tol: relative residual ‖Hv−θv‖/θ_max at which an extreme eigenvalue counts as
            converged (λ_max; also I²F's quadrature change between checks).
        tol_min: accuracy of λ_min relative to λ_max (SPEC: absolute error ≤ 1e-3·λ_max).
        n_probes: random probes for the I²F trace estimators; with ``n_probes >= d``
            the standard basis is used and the traces are exact.
        damping: ε of ``i2f`` relative to λ_max(JᵀJ) (SPEC default 1e-3).
        gm_end: spectrum end used by ``lavp_gm``.
        seed: seeds every random start vector and probe (per sample, so results do not
            depend on batching).
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        dtype: ``torch.float32`` (default) or ``torch.float64``.
        chunk_size: samples scored together; ``None`` picks it from ``memory_budget``.
        memory_budget: bytes the engine may use for one chunk's working set.
        backend: ``"auto"`` (torch.func, falling back to autograd when the model
            cannot be traced), ``"func"`` or ``"autograd"``.
        loss: the client's training loss; cross-entropy when ``None`` (computed as
            :func:`~leakaudit.scores.losses.stable_cross_entropy`, which keeps float32
            digits on confidently classified samples).
        model_mode: ``"eval"`` (SPEC default) or ``"train"`` (BatchNorm uses the single
            sample's statistics; dropout stays off).
        check_every: Lanczos steps between convergence checks.
    """

    scores: tuple[str, ...] = ALL_SCORES
    defense: Defense = field(default_factory=lambda: GaussianNoise(sigma=0.01))
    max_iter: int = 80
    tol: float = 1e-4
    tol_min: float = 1e-3
    n_probes: int = 8
    damping: float = 1e-3
    gm_end: Literal["max", "min"] = "max"
    seed: int = 0
    device: str = "auto"
    dtype: torch.dtype = torch.float32
    chunk_size: int | None = None
    memory_budget: int = 2 * 1024**3
    backend: Literal["auto", "func", "autograd"] = "auto"
    loss: LossFn | None = None
    model_mode: Literal["eval", "train"] = "eval"
    check_every: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "scores", validate_score_names(tuple(self.scores)))
        if self.max_iter < 1:
            raise ValueError("max_iter must be >= 1")
        if self.n_probes < 1:
            raise ValueError("n_probes must be >= 1")
        if not self.damping > 0:
            raise ValueError("damping must be > 0")
        if self.gm_end not in ("max", "min"):
            raise ValueError("gm_end must be 'max' or 'min'")
        if self.dtype not in (torch.float32, torch.float64):
            raise ValueError("dtype must be torch.float32 or torch.float64")
        if self.backend not in ("auto", "func", "autograd"):
            raise ValueError("backend must be 'auto', 'func' or 'autograd'")
        if self.model_mode not in ("eval", "train"):
            raise ValueError("model_mode must be 'eval' or 'train'")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")


@dataclass
class ScoreResult:
    """Per-sample scores and diagnostics, in dataset order.

    Attributes:
        indices: ``[N]`` int64, the samples' positions in the dataset.
        labels: ``[N]`` int64.
        scores: SPEC name → ``[N]`` float64 (CPU).
        diagnostics: name → ``[N]`` tensor (CPU). Always ``converged`` (bool); where
            computed: ``residual_l2_max``, ``residual_l2_min``, ``residual_cos_max``,
            ``residual_cos_min`` (‖Hv−θv‖/θ_max), ``lanczos_steps``, ``trace_jtj``
            (estimate of tr JᵀJ), ``trace_jtj_se``, ``i2f_lb_se``, ``i2f_se``,
            ``i2f_unit_sigma`` (I²F under Gaussian noise of σ = 1, for σ what-ifs).
        backend: ``"func"`` or ``"autograd"``, the path that produced the numbers.
        device: the device the numbers were computed on.
        seconds: wall time.
    """

    indices: Tensor
    labels: Tensor
    scores: dict[str, Tensor]
    diagnostics: dict[str, Tensor]
    backend: str
    device: str
    seconds: float = 0.0
