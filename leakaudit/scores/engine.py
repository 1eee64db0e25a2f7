"""The scoring engine: per-sample scores, batched over chunks, streamed over data.

This is the Python API the CLI calls (through :mod:`leakaudit.api`). Memory stays flat
as the dataset grows: one chunk is scored at a time and only per-sample scalars are
kept.
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from leakaudit.errors import InputError
from leakaudit.jacobians.autograd import AutogradOperators, module_forward
from leakaudit.jacobians.func import FuncOperators, make_flat_grad
from leakaudit.jacobians.protocol import SampleOperators
from leakaudit.jacobians.updates import make_flat_update
from leakaudit.scores import dense
from leakaudit.scores.chunk import score_chunk
from leakaudit.scores.data import chunks, iter_samples
from leakaudit.scores.losses import stable_cross_entropy
from leakaudit.scores.memory import choose_chunk_size, count_activations
from leakaudit.scores.options import ScoreOptions, ScoreResult
from leakaudit.scores.plan import Plan

#: What the engine accepts as data: a tuple ``(inputs [N, ...], labels [N])``, a
#: map-style Dataset yielding ``(x, y)``, or an iterable of ``(x [B, ...], y [B])``
#: batches such as a DataLoader.
Data = tuple[Tensor, Tensor] | Dataset | Iterable[tuple[Tensor, Tensor]]


class FallbackWarning(UserWarning):
    """torch.func could not transform the model; the autograd path was used."""


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; ``"cuda"`` without CUDA is an InputError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("CUDA was requested (--device cuda) but no CUDA device is available")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"unknown device {name!r}: use auto, cpu or cuda") from exc


class _Model:
    """The model prepared once: parameters/buffers on the device and in the dtype."""

    def __init__(self, model: nn.Module, options: ScoreOptions, device: torch.device) -> None:
        self.scripted = isinstance(model, torch.jit.ScriptModule)
        if options.model_mode == "train":
            import copy

            model = copy.deepcopy(model)
            torch.func.replace_all_batch_norm_modules_(model)
            model.train()
            for mod in model.modules():
                if isinstance(mod, nn.modules.dropout._DropoutNd):
                    mod.eval()
        else:
            self._was_training = model.training
            model.eval()
        if self.scripted:
            model.to(device=device, dtype=options.dtype)
        self.model = model
        dt = options.dtype
        self.params = {k: v.detach().to(device, dt) for k, v in model.named_parameters()}
        self.buffers = {
            k: v.detach().to(device, dt if v.is_floating_point() else v.dtype)
            for k, v in model.named_buffers()
        }
        self.loss_fn = options.loss or stable_cross_entropy
        self.device, self.dtype = device, dt
        self.local_steps = options.local_steps
        self.flat_grad = (
            make_flat_grad(model, self.params, self.buffers, self.loss_fn)
            if options.local_steps == 1
            else make_flat_update(
                model,
                self.params,
                self.buffers,
                self.loss_fn,
                options.local_steps,
                options.local_lr,
            )
        )
        self.n_outputs: int | None = None

    def func_ops(self, X: Tensor, Y: Tensor, *, linearise: bool = False) -> SampleOperators:
        return FuncOperators(self.flat_grad, X, Y, linearise=linearise)

    def autograd_ops(self, X: Tensor, Y: Tensor) -> SampleOperators:
        if self.local_steps > 1:
            raise InputError("multi-step updates (local_steps > 1) need the torch.func backend")
        if self.scripted:
            params: list[Tensor] = list(self.model.parameters())
            for p in params:
                p.requires_grad_(True)
            forward = module_forward(self.model, {}, {})
        else:
            trainable = {k: v.clone().requires_grad_(True) for k, v in self.params.items()}
            params = list(trainable.values())
            forward = module_forward(self.model, trainable, self.buffers)
        return AutogradOperators(forward, params, X, Y, self.loss_fn)

    def check_forward(self, X: Tensor, Y: Tensor) -> int:
        """One plain forward pass; returns d·(activations) and names a rejected input."""
        forward = module_forward(self.model, self.params, self.buffers)
        try:
            with torch.no_grad():
                out = forward(X[:1])
        except Exception as exc:  # the model's own error, reworded for the user
            raise InputError(
                f"the model rejects inputs of shape {tuple(X.shape[1:])}: {_first_line(exc)}"
            ) from exc
        self.n_outputs = int(out.shape[1]) if out.ndim == 2 else None
        self.check_labels(torch.zeros(1, dtype=torch.int64), Y[:1])
        return count_activations(self.model, forward, X[:1])

    def check_labels(self, idx: Tensor, Y: Tensor) -> None:
        """InputError for a class label outside [0, outputs) (custom float targets pass)."""
        if Y.is_floating_point() or self.n_outputs is None:
            return
        bad = (Y < 0) | (Y >= self.n_outputs)
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise InputError(
                f"sample {int(idx[i])}: label {int(Y[i])} is out of range for a model with "
                f"{self.n_outputs} outputs"
            )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def score_samples(
    model: nn.Module,
    data: Data,
    options: ScoreOptions | None = None,
    *,
    progress: Callable[[int], None] | None = None,
    on_chunk: Callable[[ScoreResult], None] | None = None,
    skip: int = 0,
) -> ScoreResult:
    """Score every sample of ``data`` (SPEC.md names).

    Args:
        model: a classifier ``[B, *input_shape] -> [B, C]``; evaluated in eval mode by
            default. Its parameters are not modified.
        data: ``(inputs, labels)``, a Dataset of ``(x, y)`` or an iterable of batches.
        options: what to compute and how; defaults to every score.
        progress: called with the number of samples finished since its last call, as
            samples finish (a sample whose Lanczos run stops early is reported then; the
            calls of a chunk add up to its size when the chunk is done).
        on_chunk: called with each chunk's :class:`ScoreResult` (for checkpointing).
        skip: skip the first ``skip`` samples (to resume an interrupted scan).

    Returns:
        Scores and diagnostics for every sample, in data order.

    Raises:
        InputError: the model rejects the data, or the device is unavailable.
    """
    options = options or ScoreOptions()
    device = resolve_device(options.device)
    plan = Plan.of(options)
    start = time.perf_counter()
    samples = iter_samples(data, skip)
    first = next(samples, None)
    if first is None:
        return _empty(options, device)
    samples = itertools.chain([first], samples)
    prepared = _Model(model, options, device)
    try:
        with warnings.catch_warnings():
            # torch's forward-mode decompositions still call torch.jit.script internally.
            warnings.filterwarnings(
                "ignore", message=".*torch.jit.script.*", category=FutureWarning
            )
            parts = _score_all(prepared, first, samples, options, plan, device, progress, on_chunk)
    finally:
        if options.model_mode == "eval" and getattr(prepared, "_was_training", False):
            model.train()
    result = concat_results(parts)
    result.seconds = time.perf_counter() - start
    return result


def _score_all(
    prepared: _Model,
    first: tuple[int, Tensor, Tensor],
    samples: Iterator[tuple[int, Tensor, Tensor]],
    options: ScoreOptions,
    plan: Plan,
    device: torch.device,
    progress: Callable[[int], None] | None,
    on_chunk: Callable[[ScoreResult], None] | None,
) -> list[ScoreResult]:
    X1 = first[1][None].to(device, options.dtype)
    Y1 = first[2].reshape(1).to(device)
    size = _chunk_size(prepared, X1, Y1, options, plan)
    backend = _choose_backend(prepared, X1, Y1, options, plan)
    # Lanczos products walk the chunk's linearisation: build it first, gradients with it.
    linearise = plan.lanczos and not dense.applies(options, plan, int(X1[0].numel()))
    parts: list[ScoreResult] = []
    for idx, X, Y in chunks(samples, size):
        prepared.check_labels(idx, Y)
        X = X.to(device, options.dtype)
        Y = Y.to(device)
        ops = (
            prepared.func_ops(X, Y, linearise=linearise)
            if backend == "func"
            else prepared.autograd_ops(X, Y)
        )
        scores, diag = score_chunk(ops, idx, options, plan, progress, options.lanczos_width)
        part = _to_result(idx, Y, scores, diag, backend, device)
        part.products, part.product_seconds = ops.products.n, ops.products.seconds
        parts.append(part)
        if on_chunk is not None:
            on_chunk(part)
    return parts


def _chunk_size(prepared: _Model, X1: Tensor, Y1: Tensor, options: ScoreOptions, plan: Plan) -> int:
    """``options.chunk_size``, else the largest chunk that fits the memory budget, after
    one checked forward pass on the first sample ``X1`` ``[1, ...]``."""
    activations = prepared.check_forward(X1, Y1)
    return options.chunk_size or choose_chunk_size(
        options,
        plan,
        d=X1[0].numel(),
        n_params=sum(p.numel() for p in prepared.params.values()),
        activations=activations,
    )


def planned_chunk_size(model: nn.Module, data: Data, options: ScoreOptions) -> int:
    """The chunk size :func:`score_samples` uses for ``data`` under ``options``: it
    depends on the model, the input shape and the settings only, so a scan split into
    runs of whole chunks (resumed, or sharded over processes) forms the same chunks and
    gets the same numbers, bit for bit."""
    if options.chunk_size:
        return options.chunk_size
    first = next(iter_samples(data), None)
    if first is None:
        return 1
    device = resolve_device(options.device)
    prepared = _Model(model, options, device)
    try:
        X1 = first[1][None].to(device, options.dtype)
        return _chunk_size(prepared, X1, first[2].reshape(1).to(device), options, Plan.of(options))
    finally:
        if options.model_mode == "eval" and getattr(prepared, "_was_training", False):
            model.train()


def _choose_backend(
    prepared: _Model, X1: Tensor, Y1: Tensor, options: ScoreOptions, plan: Plan
) -> str:
    """The Jacobian backend for the whole scan, chosen once by what the model supports.

    TorchScript models go through autograd. With ``"auto"``, the first sample (``X1``
    ``[1, ...]``) is put through what the scan needs under ``torch.func`` — its gradient,
    and one J·v and Jᵀu when a Lanczos run is planned (one ``jv_many`` when the dense
    path serves the plan instead): if the model cannot be
    transformed, a :class:`FallbackWarning` is issued and autograd is used. Errors
    raised later while scoring are never rerouted: they are bugs or real failures.
    """
    if prepared.scripted:
        return "autograd"
    if options.backend != "auto":
        return options.backend
    try:
        ops = prepared.func_ops(X1, Y1)
        ones = torch.ones(1, 1, ops.dim, dtype=X1.dtype, device=X1.device)
        if plan.lanczos and dense.applies(options, plan, ops.dim):
            ops.jv_many(ones)
        elif plan.lanczos:
            ops.gram(ones)
    except (RuntimeError, NotImplementedError, TypeError) as exc:
        if "out of memory" in str(exc):
            raise
        warnings.warn(
            f"torch.func cannot transform this model ({_first_line(exc)}); "
            "using per-sample double backward instead (slower, same numbers)",
            FallbackWarning,
            stacklevel=4,
        )
        return "autograd"
    return "func"


def _to_result(
    idx: Tensor,
    Y: Tensor,
    scores: dict[str, Tensor],
    diag: dict[str, Tensor],
    backend: str,
    device: torch.device,
) -> ScoreResult:
    return ScoreResult(
        indices=idx,
        labels=Y.detach().cpu(),
        scores={k: v.detach().to("cpu", torch.float64) for k, v in scores.items()},
        diagnostics={
            k: v.detach().cpu().to(torch.float64 if v.is_floating_point() else v.dtype)
            for k, v in diag.items()
        },
        backend=backend,
        device=str(device),
    )


def concat_results(parts: list[ScoreResult]) -> ScoreResult:
    """Join chunk results (in order) into one; diagnostics missing in a chunk become NaN."""
    if not parts:
        raise ValueError("no results to join")
    keys = list(dict.fromkeys(k for p in parts for k in p.diagnostics))
    n = [len(p.indices) for p in parts]

    def col(p: ScoreResult, k: str, size: int) -> Tensor:
        if k in p.diagnostics:
            return p.diagnostics[k]
        return torch.full((size,), float("nan"), dtype=torch.float64)

    backends = {p.backend for p in parts}
    return ScoreResult(
        indices=torch.cat([p.indices for p in parts]),
        labels=torch.cat([p.labels for p in parts]),
        scores={k: torch.cat([p.scores[k] for p in parts]) for k in parts[0].scores},
        diagnostics={k: torch.cat([col(p, k, s) for p, s in zip(parts, n)]) for k in keys},
        backend=backends.pop() if len(backends) == 1 else "mixed",
        device=parts[0].device,
        seconds=sum(p.seconds for p in parts),
        products=sum(p.products for p in parts),
        product_seconds=sum(p.product_seconds for p in parts),
    )


def _empty(options: ScoreOptions, device: torch.device) -> ScoreResult:
    empty = torch.zeros(0, dtype=torch.float64)
    return ScoreResult(
        indices=torch.zeros(0, dtype=torch.int64),
        labels=torch.zeros(0, dtype=torch.int64),
        scores={k: empty.clone() for k in options.scores},
        diagnostics={"converged": torch.zeros(0, dtype=torch.bool)},
        backend="none",
        device=str(device),
    )
