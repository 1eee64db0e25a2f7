"""Options and results of the scoring engine: the contract between the engine, the
Python API, the CLI and the report."""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from leakaudit.defenses import Defense, GaussianNoise
from leakaudit.scores.names import ALL_SCORES, validate_score_names

#: loss(logits [1, C], target [1]) -> scalar. Cross-entropy (in the cancellation-free
#: form of :func:`leakaudit.scores.losses.stable_cross_entropy`) when not given.
LossFn = Callable[[Tensor, Tensor], Tensor]

#: The choices of the option fields; the config's fields use the same types.
GmEnd = Literal["max", "min"]
Backend = Literal["auto", "func", "autograd"]
ModelMode = Literal["eval", "train"]
DtypeName = Literal["float32", "float64"]
DampingMode = Literal["relative", "absolute"]

#: The precisions the engine computes in, by the name the config gives them.
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}

#: The largest ``seed``: ``torch.Generator`` and NumPy take a non-negative 64-bit integer.
MAX_SEED = 2**63 - 1


class OptionError(ValueError):
    """A bad :class:`ScoreOptions` value.

    Attributes:
        field: the option (a field of :class:`ScoreOptions`).
        detail: what is wrong with it, e.g. ``"must be >= 1, got 0"``.
    """

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


def _require(ok: bool, name: str, detail: str) -> None:
    if not ok:
        raise OptionError(name, detail)


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
        damping: ε of ``i2f`` (SPEC default 1e-3), read as ``damping_mode`` says.
        damping_mode: ``"relative"`` (default): ε = damping · λ_max(JᵀJ), a condition
            number of at most 1/damping on every sample; ``"absolute"``: ε = damping, the
            fixed ρ of the I²F reference code (Zhang et al. 2023), in units of JᵀJ.
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
        blocks: split each input's d coordinates into this many equal blocks and report
            each block's part of the I²F error (diagnostics ``i2f_blocks`` and
            ``i2f_blocks_unit_sigma``, ``[N, blocks]``); ``n_probes`` must then be a
            multiple of it (each block gets its own probes). Batch scoring sets it to the
            batch size (:mod:`leakaudit.scores.batches`).
        local_steps: E, score the update of E local gradient steps of learning rate
            ``local_lr`` on the sample (or batch) instead of its gradient
            (:mod:`leakaudit.jacobians.updates`; torch.func backend only; each Jacobian
            product differentiates through all E steps). 1: the gradient (FedSGD).
        local_lr: η of those steps.
        dense_max_dim: inputs of at most this many dimensions d are scored exactly: each
            sample's Jacobian J (P × d) is formed from d J·v products and every score is
            read off dense d × d eigendecompositions (:mod:`leakaudit.scores.dense`);
            larger inputs use Lanczos. 0 disables the dense path.
        lanczos_width: samples of a chunk whose Lanczos runs step together (their
            products batched); ``None``: the whole chunk. With fewer than the chunk, a
            sample that stops hands its slot to the next one waiting, so the batch stays
            full while slow samples finish; the scores do not depend on it (to rounding).
    """

    scores: tuple[str, ...] = ALL_SCORES
    defense: Defense = field(default_factory=GaussianNoise)
    max_iter: int = 80
    tol: float = 1e-4
    tol_min: float = 1e-3
    n_probes: int = 8
    damping: float = 1e-3
    damping_mode: DampingMode = "relative"
    gm_end: GmEnd = "max"
    seed: int = 0
    device: str = "auto"
    dtype: torch.dtype = torch.float32
    chunk_size: int | None = None
    memory_budget: int = 2 * 1024**3
    backend: Backend = "auto"
    loss: LossFn | None = None
    model_mode: ModelMode = "eval"
    check_every: int = 2
    blocks: int = 1
    local_steps: int = 1
    local_lr: float = 0.1
    dense_max_dim: int = 256
    lanczos_width: int | None = None

    def __post_init__(self) -> None:
        """Check every option; the config's ``scores`` section is checked by these too.

        Raises:
            OptionError: a ``ValueError`` naming the bad option.
        """
        try:
            names = validate_score_names(tuple(self.scores))
        except ValueError as exc:
            raise OptionError("scores", str(exc)) from None
        object.__setattr__(self, "scores", names)
        for key in ("max_iter", "n_probes", "blocks", "local_steps"):
            value = getattr(self, key)
            _require(value >= 1, key, f"must be >= 1, got {value}")
        _require(
            self.blocks == 1 or self.n_probes % self.blocks == 0,
            "n_probes",
            f"must be a multiple of blocks ({self.blocks}) to give each block its probes, "
            f"got {self.n_probes}",
        )
        _require(
            self.dense_max_dim >= 0,
            "dense_max_dim",
            f"must be >= 0 (0 disables the dense path), got {self.dense_max_dim}",
        )
        _require(self.tol > 0, "tol", f"must be > 0, got {self.tol}")
        _require(self.damping > 0, "damping", f"must be > 0, got {self.damping}")
        _require(self.local_lr > 0, "local_lr", f"must be > 0, got {self.local_lr}")
        _require(
            0 <= self.seed <= MAX_SEED,
            "seed",
            f"must be an integer in [0, 2**63 - 1], got {self.seed}",
        )
        _require(
            self.lanczos_width is None or self.lanczos_width >= 1,
            "lanczos_width",
            f"must be >= 1, got {self.lanczos_width}",
        )
        _require(
            self.chunk_size is None or self.chunk_size >= 1,
            "chunk_size",
            f"must be >= 1, got {self.chunk_size}",
        )
        _require(
            self.dtype in DTYPES.values(),
            "dtype",
            f"must be torch.float32 or torch.float64, got {self.dtype}",
        )
        for key, choices in _choices().items():
            value = getattr(self, key)
            _require(
                value in choices,
                key,
                f"must be one of {', '.join(map(repr, choices))}, got {value!r}",
            )


@functools.cache
def _choices() -> dict[str, tuple[Any, ...]]:
    """The :class:`ScoreOptions` fields typed ``Literal[...]``, name → allowed values."""
    hints = typing.get_type_hints(ScoreOptions)
    return {
        f.name: typing.get_args(hints[f.name])
        for f in dataclasses.fields(ScoreOptions)
        if typing.get_origin(hints[f.name]) is Literal
    }


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
        products: single-sample Jacobian products performed (one J·v or Jᵀ·u each): the
            scan's machine-independent cost.
        product_seconds: wall time spent inside the batched product calls (host time).
    """

    indices: Tensor
    labels: Tensor
    scores: dict[str, Tensor]
    diagnostics: dict[str, Tensor]
    backend: str
    device: str
    seconds: float = 0.0
    products: int = 0
    product_seconds: float = 0.0
