"""The Python API: ``scan(config) -> Report``. The CLI is a thin layer over it.

Example:
    >>> from leakaudit.api import scan
    >>> from leakaudit.demo import demo_config
    >>> report = scan(demo_config())
    >>> report.ranked()[0].id  # the riskiest sample
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leakaudit.config import ScanConfig, config_from_dict, load_config, parse_bytes
from leakaudit.errors import ConfigError, InputError
from leakaudit.report.build import build_report
from leakaudit.report.document import Report
from leakaudit.report.partial import (
    DigestingDataset,
    PartialResults,
    fingerprint,
    load_partial,
    weights_digest,
)
from leakaudit.report.paths import relativize, report_file
from leakaudit.report.redact import Redactor, redact_key
from leakaudit.scores.engine import concat_results, resolve_device, score_samples
from leakaudit.scores.options import ScoreOptions, ScoreResult

#: ``progress(done, total)``: samples finished so far (resumed ones included), of all.
ProgressFn = Callable[[int, int], None]


@dataclasses.dataclass
class Inputs:
    """A model with its weights and the data to scan, checked to fit each other."""

    model: nn.Module
    dataset: Any
    ids: list[str]
    model_info: dict[str, Any]
    dataset_info: dict[str, Any]
    checkpoint_sha256: str | None


def score_options(config: ScanConfig) -> ScoreOptions:
    """The engine's options for ``config`` (:meth:`ScanConfig.score_options`); a bad value
    is a ConfigError naming its key."""
    return config.score_options()


def check_compatible(model: nn.Module, dataset: Any, labels: list[int] | torch.Tensor) -> int:
    """One forward pass on the first sample; returns the model's number of outputs K.

    Raises:
        InputError: the model rejects the input shape (both shapes named), its output is
            not ``[1, K]`` logits, or a label is ``>= K``.
    """
    x, _ = dataset[0]
    x = torch.as_tensor(x)
    try:
        with torch.no_grad():
            was_training = model.training
            model.eval()
            out = model(x[None].float())
            model.train(was_training)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(
            f"the model rejects the data's input shape {tuple(x.shape)} "
            f"(batch {tuple(x[None].shape)}): {first}"
        ) from exc
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(f"the model must return logits of shape [batch, classes], got {shape}")
    k = int(out.shape[1])
    labels_t = torch.as_tensor(labels)
    if labels_t.numel() and int(labels_t.max()) >= k:
        pos = int(labels_t.argmax())
        raise InputError(
            f"label {int(labels_t.max())} (sample {pos}) is out of range for a model with "
            f"{k} outputs (labels must be 0..{k - 1})"
        )
    return k


#: Most classes a model gets from the data's labels alone (max label + 1); more needs an
#: explicit model.num_classes, so that one stray label cannot build a billion-output model.
MAX_INFERRED_CLASSES = 100_000

NO_CHECKPOINT = (
    "no checkpoint: give --checkpoint, or --random-init to score a randomly initialised model"
)


def _labels_num_classes(loaded: Any) -> int:
    """The dataset's number of classes, refused when one stray label makes it absurd."""
    k = int(loaded.num_classes)
    if k > MAX_INFERRED_CLASSES:
        labels = torch.as_tensor(loaded.labels)
        pos = int(labels.argmax())
        raise InputError(
            f"label {int(labels[pos])} of sample {loaded.ids[pos]!r} would give the model "
            f"{k} classes (more than {MAX_INFERRED_CLASSES}); fix the label, or set "
            "model.num_classes (--num-classes) if the model really has that many outputs"
        )
    return k


def load_inputs(config: ScanConfig) -> Inputs:
    """Build the model, load its weights and the data, and check that they fit.

    The number of classes is ``model.num_classes``, else the checkpoint's classifier size,
    else the data's (max label + 1); labels outside it are refused before the model is
    built. Without a checkpoint, ``model.random_init`` must be on; the model is then
    initialised from ``scores.seed``.
    """
    # Imported here: the model zoo imports torchvision (~2 s), which `--help` should not pay.
    from leakaudit.io.checkpoints import apply_checkpoint, read_checkpoint
    from leakaudit.io.datasets import check_dataset, load_dataset
    from leakaudit.io.state_dicts import infer_num_classes
    from leakaudit.models import build_model

    d, m = config.data, config.model
    if m.name == "torchscript" and not m.checkpoint:
        raise ConfigError("model.checkpoint: required when model.name is torchscript")
    if not m.checkpoint and not m.random_init:
        raise ConfigError(NO_CHECKPOINT)
    loaded = load_dataset(d, parse_bytes(config.scores.memory_budget))
    if len(loaded.ids) == 0:
        raise InputError(f"the dataset is empty ({loaded.description})")
    shape = tuple(loaded.input_shape)
    in_channels = m.in_channels or (shape[0] if len(shape) == 3 else 1)
    image_size = m.image_size or (shape[-1] if len(shape) == 3 else 32)
    raw = read_checkpoint(m.checkpoint, trust=m.trust_checkpoint) if m.checkpoint else None

    def build(k: int) -> nn.Module:
        return build_model(
            m.name, num_classes=k, in_channels=in_channels, image_size=image_size, kwargs=m.kwargs
        )

    state = raw.state_dict() if raw is not None and m.name != "torchscript" else None
    num_classes = m.num_classes
    if num_classes is None and state is not None:
        num_classes = infer_num_classes(state, build)
    if num_classes is None:
        num_classes = _labels_num_classes(loaded)
    check_dataset(loaded, num_classes)
    info = None
    if m.name == "torchscript":
        assert raw is not None
        model, info = apply_checkpoint(raw, None)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.scores.seed)  # a random init is the same on every run
            model = build(num_classes)
        if raw is not None:
            model, info = apply_checkpoint(raw, model, strict=m.strict)
    outputs = check_compatible(model, loaded.dataset, loaded.labels)
    checkpoint = dataclasses.asdict(info) if info is not None else None
    for key, value in (checkpoint or {}).items():
        if isinstance(value, Path):
            checkpoint[key] = str(value)  # type: ignore[index]
    model_info: dict[str, Any] = {
        "name": m.name,
        "class": type(model).__name__,
        "num_classes": outputs,
        "in_channels": in_channels,
        "image_size": image_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "checkpoint": checkpoint,
    }
    dataset_info = {**loaded.description, "num_samples": len(loaded.ids)}
    return Inputs(
        model=model,
        dataset=loaded.dataset,
        ids=[str(i) for i in loaded.ids],
        model_info=model_info,
        dataset_info=dataset_info,
        checkpoint_sha256=info.sha256 if info is not None else None,
    )


def scan(
    config: ScanConfig | dict[str, Any] | str | Path,
    *,
    progress: ProgressFn | None = None,
    resume_path: str | Path | None = None,
    partial_path: str | Path | None = None,
    base_dir: str | Path | None = None,
) -> Report:
    """Score every sample of the configured data and return the ranked, gated report.

    Args:
        config: a :class:`ScanConfig`, a mapping in the YAML layout, or a YAML path.
        progress: ``progress(done, total)`` after each chunk.
        resume_path: partial results of an interrupted scan to continue from; a missing
            file means there is nothing to resume and the scan starts afresh.
        partial_path: where to checkpoint partial results after each chunk (default:
            ``resume_path``). The caller removes it once the report is saved. An
            existing file there must be a partial-results file (it is replaced).
        base_dir: the report stores file paths relative to this directory (default:
            the config file's directory, else the current one; see
            :mod:`leakaudit.report.paths`).

    Returns:
        The report; it never prints. ``report.gate.passed`` is the CI verdict.

    Raises:
        ConfigError, InputError: bad configuration or inputs (exit 2), also partial
            results of other settings or data.
    """
    if isinstance(config, str | Path):
        base_dir = Path(config).parent if base_dir is None else base_dir
        config = load_config(config)
    elif isinstance(config, dict):
        config = config_from_dict(config)
    start = time.perf_counter()
    options = score_options(config)
    resolve_device(options.device)  # CUDA requested but absent: fail before loading anything
    inputs = load_inputs(config)
    total = len(inputs.ids)
    key = fingerprint(config, inputs.checkpoint_sha256, weights_digest(inputs.model))
    done = (
        load_partial(Path(resume_path), key, inputs.dataset, inputs.ids)
        if resume_path is not None
        else None
    )
    sidecar = partial_path if partial_path is not None else resume_path
    partial = PartialResults(Path(sidecar) if sidecar else None, key, total, *(done or ()))
    resumed = partial.count
    data = DigestingDataset(inputs.dataset)
    if progress is not None:
        progress(resumed, total)

    def advance(n: int) -> None:
        if progress is not None:
            progress(partial.count, total)

    if resumed < total:
        fresh = score_samples(
            inputs.model,
            data,
            options,
            progress=advance,
            on_chunk=lambda part: partial.add(part, data.take(part.indices)),
            skip=resumed,
        )
        backend, device = fresh.backend, fresh.device
    else:
        assert partial.result is not None
        backend, device = partial.result.backend, partial.result.device
    result: ScoreResult = partial.result if partial.result is not None else concat_results([])
    result.backend, result.device = backend, device
    redactor = Redactor(redact_key()) if config.output.redact else None
    report = build_report(
        result,
        ids=[redactor.id(i) for i in inputs.ids] if redactor else inputs.ids,
        config=redactor.config(config) if redactor else config,
        model_info=inputs.model_info,
        dataset_info=inputs.dataset_info,
        seconds=time.perf_counter() - start,
        resumed=resumed,
        warnings=(
            ["model.trust_checkpoint is on: the checkpoint was unpickled without restrictions"]
            if config.model.trust_checkpoint
            else []
        )
        + (
            [
                "model.random_init is on: the model has random weights (seeded by "
                f"scores.seed = {config.scores.seed}), not trained ones; its scores say "
                "nothing about a trained model"
            ]
            if config.model.random_init
            else []
        ),
    )
    relativize(report, Path.cwd() if base_dir is None else base_dir, report_file(config))
    if redactor is not None:
        redactor.paths(report)
        redactor.save()
    return report


__all__ = [
    "Inputs",
    "ProgressFn",
    "ScoreOptions",
    "check_compatible",
    "load_inputs",
    "scan",
    "score_options",
    "score_samples",
]
