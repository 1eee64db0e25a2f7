"""The Python API: ``scan(config) -> Report`` and its peer
``validate(config, scores) -> ValidationResult``. The CLI is a thin layer over both.

Example:
    >>> from leakaudit import demo_config, scan, validate
    >>> report = scan(demo_config())
    >>> report.ranked()[0].id  # the riskiest sample
    >>> result = validate(demo_config(), report, attacks=["dlg"], budget="fast")
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

from leakaudit.attacks import InputSpace, check_attacks
from leakaudit.attacks.base import check_budget
from leakaudit.calibration.crossval import CalibrationError
from leakaudit.calibration.document import (
    Calibration,
    CalibrationFileError,
    architecture_signature,
    check_applicable,
    read_calibration,
    score_settings,
)
from leakaudit.calibration.fit import fit_calibration
from leakaudit.calibration.recovery import (
    MIN_GAIN_DB,
    MIN_PSNR_DB,
    Recovery,
    best_over_attacks,
)
from leakaudit.calibration.stratify import stratified_subset
from leakaudit.config import (
    ScanConfig,
    config_from_dict,
    load_config,
    parse_bytes,
    with_overrides,
)
from leakaudit.config.selection import Selection, resolve_selection
from leakaudit.distributed import Sharded, process_group, score_sharded
from leakaudit.distributed.attacks import ShardedAttacks
from leakaudit.distributed.batches import ShardedBatches
from leakaudit.distributed.subsets import score_positions
from leakaudit.errors import ConfigError, InputError
from leakaudit.gate import Baseline
from leakaudit.report.baseline import check_same_setup, read_baseline
from leakaudit.report.build import build_report
from leakaudit.report.document import Report
from leakaudit.report.formats.html import ends
from leakaudit.report.paths import relativize, report_file
from leakaudit.report.png import image_png
from leakaudit.report.redact import Redactor, redact_key
from leakaudit.resume import fingerprint, sample_digest, weights_digest
from leakaudit.scores.batches import BatchScores, score_batches
from leakaudit.scores.batching import Batching
from leakaudit.scores.engine import resolve_device, score_samples
from leakaudit.scores.names import ALL_SCORES, GRAD_NORM
from leakaudit.scores.options import ScoreOptions, ScoreResult
from leakaudit.validation import ValidationResult
from leakaudit.validation.sources import (
    FROM_REPORT,
    ScoreTable,
    check_report_checkpoint,
    check_sample_indices,
    scores_from_report,
    scores_from_result,
    validate_scores,
)

if TYPE_CHECKING:
    from leakaudit.io.checkpoints import CheckpointInfo, RawCheckpoint
    from leakaudit.io.datasets import LoadedDataset

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
    from leakaudit.io.checkpoints import read_checkpoint
    from leakaudit.io.datasets import load_dataset

    m = config.model
    if m.name == "torchscript" and not m.checkpoint:
        raise ConfigError("model.checkpoint: required when model.name is torchscript")
    if not m.checkpoint and not m.random_init:
        raise ConfigError(NO_CHECKPOINT)
    loaded = load_dataset(config.data, parse_bytes(config.scores.memory_budget))
    if len(loaded.ids) == 0:
        raise InputError(f"the dataset is empty ({loaded.description})")
    shape = tuple(loaded.input_shape)
    in_channels = m.in_channels or (shape[0] if len(shape) == 3 else 1)
    image_size = m.image_size or (shape[-1] if len(shape) == 3 else 32)
    raw = read_checkpoint(m.checkpoint, trust=m.trust_checkpoint) if m.checkpoint else None
    model, info = _model(config, raw, loaded, in_channels, image_size)
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
    return Inputs(
        model=model,
        dataset=loaded.dataset,
        ids=[str(i) for i in loaded.ids],
        model_info=model_info,
        dataset_info={**loaded.description, "num_samples": len(loaded.ids)},
        checkpoint_sha256=info.sha256 if info is not None else None,
    )


def _model(
    config: ScanConfig,
    raw: RawCheckpoint | None,
    loaded: LoadedDataset,
    in_channels: int,
    image_size: int,
) -> tuple[nn.Module, CheckpointInfo | None]:
    """The model with the checkpoint's weights (a seeded random init without one), after
    the data's labels are checked against its number of classes."""
    # Imported here: the model zoo imports torchvision (~2 s), which `--help` should not pay.
    from leakaudit.io.checkpoints import apply_checkpoint
    from leakaudit.io.datasets import check_dataset
    from leakaudit.io.state_dicts import infer_num_classes
    from leakaudit.models import build_model

    m = config.model

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
    if m.name == "torchscript":
        assert raw is not None
        return apply_checkpoint(raw, None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.scores.seed)  # a random init is the same on every run
        model = build(num_classes)
    if raw is None:
        return model, None
    return apply_checkpoint(raw, model, strict=m.strict)


def _score_resumably(
    config: ScanConfig,
    inputs: Inputs,
    options: ScoreOptions,
    progress: ProgressFn | None,
    resume_path: str | Path | None,
    partial_path: str | Path | None,
) -> Sharded:
    """Score ``inputs`` (sharded over the ranks of a torchrun job,
    :mod:`leakaudit.distributed`), continuing the partial results at ``resume_path``
    and saving them to ``partial_path`` (default: ``resume_path``) after each chunk."""
    key = fingerprint(
        config, inputs.checkpoint_sha256, weights_digest(inputs.model), options.scores
    )
    return score_sharded(
        inputs.model,
        inputs.dataset,
        inputs.ids,
        options,
        key,
        progress=progress,
        resume_path=resume_path,
        partial_path=partial_path,
    )


class _Scored(NamedTuple):
    """A scan's rows, how many were resumed, their content hashes (hex) and ids, the
    batch scan's ``summary.batches`` (None for a per-sample scan), and the sharded scan's
    ``summary.distributed``."""

    result: ScoreResult
    resumed: int
    content: list[str]
    ids: list[str]
    batches: dict[str, Any] | None
    distributed: dict[str, Any] | None = None


#: A batch scan refuses partial results (one line, exit 2).
BATCH_NO_PARTIALS = (
    "--resume/--partial: a batch scan (--batch-size) keeps no partial results; "
    "run it without them (under torchrun its batches are still sharded over the ranks)"
)


def _score_scan(
    config: ScanConfig,
    inputs: Inputs,
    options: ScoreOptions,
    progress: ProgressFn | None,
    resume_path: str | Path | None,
    partial_path: str | Path | None,
) -> _Scored:
    """The scan's rows: per sample (resumable), or per batch when ``scores.batch_size`` is
    set (not checkpointed); both sharded over the ranks of a torchrun job."""
    batching = config.scores.batching()
    if batching is None:
        sharded = _score_resumably(config, inputs, options, progress, resume_path, partial_path)
        content = [bytes(row.tolist()).hex() for row in sharded.digests]
        return _Scored(
            sharded.result, sharded.resumed, content, inputs.ids, None, sharded.section
        )
    scored, sharding = _score_batched(inputs, batching, options, progress)
    rows = scored.per_sample()
    positions = rows.indices.tolist()
    content = [sample_digest(*inputs.dataset[i]).hex() for i in positions]
    summary = {
        "batch_size": batching.size,
        "num_batches": len(scored.members),
        "shuffle": batching.shuffle,
        "drop_last": batching.drop_last,
        "dropped_samples": len(inputs.ids) - len(positions),
    }
    ids = [inputs.ids[i] for i in positions]
    return _Scored(rows, 0, content, ids, summary, sharding.section())


def _score_batched(
    inputs: Inputs, batching: Batching, options: ScoreOptions, progress: ProgressFn | None
) -> tuple[BatchScores, ShardedBatches]:
    """The batch scan's scores of every batch the loader forms (sharded over the ranks of
    a torchrun job), and the sharding's record; progress counts the batched samples."""
    members = batching.batches(len(inputs.ids))
    advance = _counting(progress, sum(len(m) for m in members))
    sharding = ShardedBatches()
    with process_group(resolve_device(options.device)):  # one group for every run
        scored = score_batches(
            inputs.model, inputs.dataset, batching, options, progress=advance, score=sharding
        )
    return scored, sharding


def _warnings(config: ScanConfig) -> list[str]:
    """The report's warnings about settings that weaken or endanger the scan."""
    warnings = []
    if config.model.trust_checkpoint:
        warnings.append(
            "model.trust_checkpoint is on: the checkpoint was unpickled without restrictions"
        )
    if config.model.random_init:
        warnings.append(
            "model.random_init is on: the model has random weights (seeded by "
            f"scores.seed = {config.scores.seed}), not trained ones; its scores say "
            "nothing about a trained model"
        )
    return warnings


#: What :func:`scan` and :func:`validate` accept as a configuration.
ConfigLike = ScanConfig | dict[str, Any] | str | Path


def _as_config(config: ConfigLike, base_dir: str | Path | None) -> tuple[ScanConfig, Any]:
    """``config`` as a :class:`ScanConfig`, and the directory its relative paths are
    relative to (a YAML file's own directory unless ``base_dir`` says otherwise)."""
    if isinstance(config, str | Path):
        base_dir = Path(config).parent if base_dir is None else base_dir
        return load_config(config), base_dir
    if isinstance(config, dict):
        return config_from_dict(config), base_dir
    return config, base_dir


def scan(
    config: ConfigLike,
    *,
    progress: ProgressFn | None = None,
    resume_path: str | Path | None = None,
    partial_path: str | Path | None = None,
    base_dir: str | Path | None = None,
    images: int = 0,
) -> Report:
    """Score every sample of the configured data and return the ranked, gated report.

    Args:
        config: a :class:`ScanConfig`, a mapping in the YAML layout, or a YAML path.
        progress: ``progress(done, total)`` as samples finish.
        resume_path: partial results of an interrupted scan to continue from; a missing
            file means there is nothing to resume and the scan starts afresh.
        partial_path: where to checkpoint partial results after each chunk (default:
            ``resume_path``). The caller removes it once the report is saved. An
            existing file there must be a partial-results file (replaced); batch scans refuse both.
        base_dir: the report stores file paths relative to this directory (default:
            the config file's, else the current one; :mod:`leakaudit.report.paths`).
        images: PNGs of the inputs of the ``images`` riskiest and safest samples in
            ``report.images`` (the ``html`` format shows them); none when redacted.

    Returns:
        The report; it never prints. ``report.gate.passed`` is the CI verdict.

    Raises:
        ConfigError, InputError: bad configuration or inputs (exit 2), also partial
            results of other settings or data.
    """
    config, base_dir = _as_config(config, base_dir)
    start = time.perf_counter()
    options, calibration, selection = _scan_options(config, resume_path or partial_path)
    baseline = _read_baseline(config)
    with _recorded_warnings() as caught:  # also printed by the CLI; kept in the report
        inputs = load_inputs(config)
        notes = _check_calibration(calibration, inputs, config, options)
        if baseline is not None:
            check_same_setup(baseline[1], baseline[0].path, inputs.model_info, inputs.dataset_info)
        scored = _score_scan(config, inputs, options, progress, resume_path, partial_path)
    redactor = Redactor(redact_key()) if config.output.redact else None
    report = build_report(
        scored.result,
        ids=[redactor.id(i) for i in scored.ids] if redactor else scored.ids,
        config=redactor.config(config) if redactor else config,
        model_info=inputs.model_info,
        dataset_info=inputs.dataset_info,
        seconds=time.perf_counter() - start,
        resumed=scored.resumed,
        warnings=[*_warnings(config), *notes, *caught],
        calibration=calibration,
        content=[redactor.content(c) for c in scored.content] if redactor else scored.content,
        baseline=baseline[0] if baseline is not None else None,
        selection=selection.to_dict(),
        batches=scored.batches,
    )
    if scored.distributed is not None:  # the world size, per-rank throughput
        report.summary["distributed"] = scored.distributed
    return _finish(report, config, base_dir, redactor, (inputs.dataset, images))


def _finish(
    report: Report,
    config: ScanConfig,
    base_dir: str | Path | None,
    redactor: Redactor | None,
    images: tuple[Any, int],
) -> Report:
    """The report's paths made relative and redacted, or (unredacted) the ``images[1]``
    riskiest and safest inputs of dataset ``images[0]`` attached."""
    relativize(report, Path.cwd() if base_dir is None else base_dir, report_file(config))
    dataset, k = images
    if redactor is not None:
        redactor.paths(report)
        redactor.save()
    elif k > 0:
        report.images = _sample_images(report, dataset, input_space(config), k)
    return report


def _sample_images(report: Report, dataset: Any, space: InputSpace, k: int) -> dict[int, bytes]:
    """PNG of the inputs of the ``k`` riskiest and ``k`` safest samples, by index, as
    raw pixels (the data's normalisation undone)."""
    risky, safe = ends(report, k)
    pngs = {}
    for s in [*risky, *safe]:
        x = dataset[s.index][0]
        pngs[s.index] = image_png(space.to_unit(x[None]).clamp(0, 1)[0])
    return pngs


@contextmanager
def _recorded_warnings() -> Iterator[list[str]]:
    """Collect the messages of leakaudit's own warnings raised inside, then raise every
    warning again for the caller (the CLI prints them; the report keeps them)."""
    messages: list[str] = []
    records: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield messages
            finally:
                records = list(caught)
    finally:
        for w in records:
            if w.category.__module__.startswith("leakaudit"):
                messages.append(str(w.message))
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _counting(progress: ProgressFn | None, total: int, start: int = 0) -> Callable[[int], None]:
    """The engine's ``progress(n_finished)`` increments as ``progress(done, total)`` calls."""
    done = start

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    return advance


def _scan_options(
    config: ScanConfig, partials: str | Path | None = None
) -> tuple[ScoreOptions, Calibration | None, Selection]:
    """The engine's options for the scores the scan computes (:func:`resolve_selection`),
    the calibration, and the selection (what is computed, and why). Fails early when
    CUDA is asked for but absent, or a batch scan is given partial results."""
    if config.scores.batch_size is not None and partials:
        raise ConfigError(BATCH_NO_PARTIALS)
    calibration = _read_calibration(config)
    chosen = calibration.chosen if calibration is not None else None
    selection = resolve_selection(config, chosen.scores if chosen is not None else ())
    options = replace(score_options(config), scores=selection.computed)
    resolve_device(options.device)  # CUDA requested but absent: fail before loading anything
    return options, calibration, selection


def _read_baseline(config: ScanConfig) -> tuple[Baseline, dict[str, Any]] | None:
    """The baseline report (``gate.baseline``) with the scores the gate rules read."""
    if config.gate.baseline is None:
        return None
    return read_baseline(config.gate.baseline, [r.score for r in config.gate.rules])


def _read_calibration(config: ScanConfig) -> Calibration | None:
    """The configured calibration (``scores.calibration``), checked to be usable (a gate
    rule on ``psnr`` without one is refused by the config)."""
    path = config.scores.calibration
    if path is None:
        return None
    try:
        cal = read_calibration(path)
        cal.require_usable()
    except CalibrationFileError as exc:
        raise InputError(f"--calibration: {exc}") from None
    return cal


def _check_calibration(
    cal: Calibration | None, inputs: Inputs, config: ScanConfig, options: ScoreOptions
) -> list[str]:
    """Refuse a calibration of another architecture, input shape or score settings;
    warnings otherwise (see :func:`leakaudit.calibration.document.check_applicable`)."""
    if cal is None:
        return []
    x, _ = inputs.dataset[0]
    try:
        return check_applicable(
            cal,
            architecture=architecture_signature(inputs.model),
            input_shape=list(torch.as_tensor(x).shape),
            checkpoint_sha256=inputs.checkpoint_sha256,
            settings=score_settings(options),
            defense={"kind": config.defense.kind, **config.defense.params},
        )
    except CalibrationFileError as exc:
        raise InputError(f"--calibration: {exc}") from None


#: Scores :func:`validate` accepts: the engine's, a report, or a report's JSON document.
ScoresLike = ScoreResult | Report | Mapping[str, Any]


def validate(
    config: ConfigLike,
    scores: ScoresLike | None = None,
    *,
    attacks: Sequence[str] = ("dlg", "ig"),
    budget: str = "standard",
    n_samples: int = 32,
    indices: Sequence[int] | None = None,
    risk_score: str | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: ProgressFn | None = None,
    scan_progress: ProgressFn | None = None,
    batch_size: int | None = None,
) -> ValidationResult:
    """Attack a stratified subset of the configured samples and measure which score
    predicts how well they are reconstructed: what ``leakaudit validate`` runs.

    The model and data are loaded as :func:`scan` loads them; the attacker sees the
    configured defence; pixels are un-normalised with the data's ``mean``/``std``.

    Args:
        config: as in :func:`scan`.
        scores: the scan's scores: a :class:`Report` or its JSON document (its checkpoint
            must be the configured one, checked by SHA-256), or a :class:`ScoreResult` of
            this configuration; ``None`` scores the data now.
        attacks, budget: attack names (``dlg``, ``idlg``, ``ig``); iteration preset.
        n_samples, indices: samples to attack, stratified by risk; or dataset positions.
        risk_score: orders the selection (default: the scan's risk score).
        seed: seeds selection, defence noise, attacks and bootstrap.
        device: where to attack: ``auto``, ``cpu`` or ``cuda``.
        progress, scan_progress: ``(done, total)`` of the attacks in iterations, and of
            the scoring in samples when ``scores`` is ``None``.
        batch_size: B (default: ``scores.batch_size``): attack the gradients of the
            batches ``scan`` batches, with the batch scan's scores (docs/validate.md).

    Returns: the :class:`ValidationResult`; it never prints.

    Raises:
        ConfigError: a bad configuration, attack, budget, score or index (exit 2).
        InputError: bad inputs, or a report that did not scan this checkpoint (exit 2).
    """
    config = _with_batch_size(_as_config(config, None)[0], batch_size)
    dev, options = _attack_device(attacks, budget, device), score_options(config)
    _attacks_invert_gradients(options)
    with process_group(_group_device(dev, options)):  # under torchrun: ranks share attacks
        inputs, table = _inputs_and_scores(config, options, scores, scan_progress)
        _check_has_score(table, risk_score)
        return _attack_sharded(
            inputs, table, dev, progress, n_samples=n_samples, indices=indices,
            risk_score=risk_score, seed=seed, attacks=attacks, budget=budget,
            batching=config.scores.batching(), **_configured(config, options),
        )  # fmt: skip


def _with_batch_size(config: ScanConfig, batch_size: int | None) -> ScanConfig:
    """``config`` with ``scores.batch_size`` set to ``batch_size`` when it is given.

    Raises:
        ConfigError: a batch size below 1.
    """
    if batch_size is None:
        return config
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: must be >= 1")
    return with_overrides(config, {"scores.batch_size": batch_size})


def _attack_sharded(
    inputs: Inputs,
    table: ScoreTable,
    device: torch.device,
    progress: ProgressFn | None,
    **kwargs: Any,
) -> ValidationResult:
    """:func:`validate_scores` with its attacks spread over the ranks of a torchrun job
    (all here outside one; inside :func:`process_group`); the result's ``distributed``
    section says who attacked what."""
    spread = ShardedAttacks(device, progress)
    with _config_errors():
        result = validate_scores(
            inputs.model,
            inputs.dataset,
            table,
            device=device,
            progress=spread.relay,
            spread=spread,
            **kwargs,
        )
    result.config["distributed"] = spread.section
    return result


def _check_has_score(table: ScoreTable, risk_score: str | None) -> None:
    """Refuse a risk score the scan report did not compute (a default scan computes only
    what it reads: see :func:`leakaudit.config.selection.resolve_selection`)."""
    if risk_score is None or risk_score in table.scores or table.origin != FROM_REPORT:
        return
    raise InputError(
        f"--report: the scan report has no {risk_score!r} scores (it computed "
        f"{', '.join(table.scores)}); rescan with --scores all (or add {risk_score} to "
        "--scores), or omit --report to score the data now"
    )


def _attack_device(attacks: Sequence[str], budget: str, device: str) -> torch.device:
    """Where to attack, after checking the attack names and the budget.

    Raises:
        ConfigError: an unknown attack or budget, or CUDA asked for but absent.
    """
    with _config_errors():
        check_attacks(list(attacks))
        check_budget(budget)
    return resolve_device(device)


def _group_device(attack: torch.device, options: ScoreOptions) -> torch.device:
    """The device a torchrun rank joins its group with: CUDA when the attacks or the
    scoring run there, so that each rank takes its own ``LOCAL_RANK`` GPU."""
    return attack if attack.type == "cuda" else resolve_device(options.device)


def _attacks_invert_gradients(options: ScoreOptions) -> None:
    """Refuse scores of a multi-step update where attacks on one gradient judge them."""
    if options.local_steps != 1:
        raise ConfigError(
            f"scores.local_steps: the attacks invert one gradient, so validate and calibrate "
            f"score it too: set local_steps to 1 (got {options.local_steps})"
        )


def _calibrates_per_sample(batch_size: int | None) -> None:
    """Refuse a batch size in calibrate: its attacks invert single samples' gradients, so
    it calibrates per-sample scores."""
    if batch_size is not None:
        raise ConfigError(
            "scores.batch_size: calibrate attacks single samples' gradients, so it calibrates "
            "per-sample scores: remove batch_size (validate --batch-size attacks batches)"
        )


def _configured(config: ScanConfig, options: ScoreOptions) -> dict[str, Any]:
    """What the configuration sets for a validation: the defence the attacker faces, the
    input space of the pixels, and the scores' direction overrides."""
    return {
        "defense": options.defense,
        "space": input_space(config),
        "directions": dict(config.scores.directions),
    }


@contextmanager
def _config_errors() -> Iterator[None]:
    """A ``ValueError`` raised inside (a bad attack, budget, score or index) as a
    :class:`ConfigError` (exit 2) with the same message."""
    try:
        yield
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _inputs_and_scores(
    config: ScanConfig,
    options: ScoreOptions,
    scores: ScoresLike | None,
    progress: ProgressFn | None,
) -> tuple[Inputs, ScoreTable]:
    """The model and data (:func:`load_inputs`), and the scores to validate.

    A scan report's checkpoint must be the configured one: it is checked before loading
    and again after (the file may change meanwhile).
    """
    report = scores.to_dict() if isinstance(scores, Report) else scores
    if isinstance(report, Mapping):
        _check_report_model(config, report, None)
    inputs = load_inputs(config)
    if isinstance(report, Mapping):
        _check_report_model(config, report, inputs.checkpoint_sha256)
    _check_batch_size(config, report, len(inputs.dataset))
    return inputs, _score_table(config, inputs, options, report, progress)


def _check_batch_size(config: ScanConfig, report: Any, size: int) -> None:
    """Refuse, before any scoring, a batch size larger than the data, or a scan report
    whose batches (none: B = 1) are not the ones to attack."""
    batch = config.scores.batch_size
    if batch is not None and batch > size:
        raise ConfigError(f"--batch-size {batch}: larger than the {size} samples of the data")
    if not isinstance(report, Mapping):
        return
    scanned = (report.get("config") or {}).get("scores") or {}
    if (scanned.get("batch_size") or 1) != (batch or 1):
        raise InputError(
            f"--report: the scan scored batches of {scanned.get('batch_size') or 1}, not "
            f"{batch or 1}: rescan with the same --batch-size, or omit --report to score now"
        )
    if batch is None:
        return
    mine = config.scores  # the loader's batches must be the ones the scan scored
    for key in ("batch_shuffle", "seed", "drop_last"):
        if key in scanned and scanned[key] != getattr(mine, key):
            raise InputError(
                f"--report: the scan formed its batches with scores.{key} = {scanned[key]}, "
                f"not {getattr(mine, key)}: use the scan's settings, or omit --report"
            )


def _check_report_model(config: ScanConfig, report: Mapping[str, Any], sha: str | None) -> None:
    """Refuse a report whose scores belong to other weights than ``config``'s checkpoint."""
    if config.model.checkpoint is None:
        raise ConfigError(
            "--report: the scanned model has no checkpoint, so its random weights cannot be "
            "rebuilt; validate would attack a different model (omit --report to rescore)"
        )
    check_report_checkpoint(dict(report), config.model.checkpoint, sha)


def _score_table(
    config: ScanConfig,
    inputs: Inputs,
    options: ScoreOptions,
    scores: ScoreResult | Mapping[str, Any] | None,
    progress: ProgressFn | None,
) -> ScoreTable:
    """The scores to validate: read from a report, taken from a result, or computed now."""
    if isinstance(scores, Mapping):
        check_sample_indices(dict(scores), len(inputs.dataset))
        try:
            return scores_from_report(scores)
        except ValueError as exc:
            raise InputError(f"--report: {exc}") from None
    if scores is None:  # sharded under torchrun, as the attacks are
        batching = config.scores.batching()
        if batching is None:
            every = range(len(inputs.ids))
            data = inputs.dataset
            scores = score_positions(inputs.model, data, every, options, progress=progress)
        else:  # the batch scan's rows: each sample's I²F block, its batch's other scores
            scores = _score_batched(inputs, batching, options, progress)[0].per_sample()
    return scores_from_result(scores, inputs.ids, config.scores.risk_score)


def calibrate(
    config: ConfigLike,
    *,
    n_samples: int = 32,
    attacks: Sequence[str] = ("idlg", "ig"),
    budget: str = "standard",
    folds: int = 4,
    seed: int = 0,
    device: str = "auto",
    min_psnr_db: float = MIN_PSNR_DB,
    min_gain_db: float = MIN_GAIN_DB,
    progress: ProgressFn | None = None,
    scan_progress: ProgressFn | None = None,
) -> Calibration:
    """Learn, on this model and data, which score predicts what an attack recovers, and
    map it to PSNR: what ``leakaudit calibrate`` runs (see docs/calibration.md).

    ``n_samples`` samples, stratified over the quantiles of the gradient norm (cheap, and
    computed for every sample), get every score and are attacked by each of ``attacks``
    under the configured defence; a sample's quality is the best PSNR any attack reached
    (an upper bound on one attacker, who cannot compare with the original).
    Cross-validation then chooses the rule and fits the map
    (:func:`leakaudit.calibration.fit.fit_calibration`).

    Returns:
        The :class:`~leakaudit.calibration.document.Calibration` (its ``status`` says
        ``attacks_failed`` when too few samples were recovered to calibrate anything).

    Raises:
        ConfigError: a bad configuration, attack, budget or size (exit 2).
        InputError: bad inputs (exit 2).
    """
    config = _as_config(config, None)[0]
    _check_folds(n_samples, folds)
    dev = _attack_device(attacks, budget, device)  # before any work
    options = score_options(config)
    _calibrates_per_sample(config.scores.batch_size)
    _attacks_invert_gradients(options)
    with process_group(_group_device(dev, options)):  # under torchrun: ranks share attacks
        inputs = load_inputs(config)
        subset = _calibration_subset(inputs, options, n_samples, folds, seed).tolist()
        full = _scored(inputs, replace(options, scores=ALL_SCORES), subset, scan_progress)
        result = _attack_sharded(
            inputs,
            scores_from_result(full, inputs.ids, config.scores.risk_score),
            dev,
            progress,
            indices=subset,
            seed=seed,
            attacks=attacks,
            budget=budget,
            **_configured(config, options),
        )
    quality = _best_recovery(result, min_psnr_db, min_gain_db)
    scores = {k: v.numpy() for k, v in result.scores.items()}
    meta = _calibration_meta(config, inputs, result, attacks, budget, options)
    try:
        return fit_calibration(scores, quality, meta=meta, k=folds, seed=seed)
    except (CalibrationError, ValueError) as exc:
        raise InputError(f"cannot calibrate on these samples: {exc}") from None


def _best_recovery(result: ValidationResult, min_psnr_db: float, min_gain_db: float) -> Recovery:
    """What the attacks recovered of each sample: the best reconstruction over the attacks."""
    recons = {a: r.numpy() for a, r in result.reconstructions.items()}
    originals = result.originals.numpy()
    return best_over_attacks(recons, originals, min_psnr_db=min_psnr_db, min_gain_db=min_gain_db)


def _check_folds(n_samples: int, folds: int) -> None:
    if folds < 2:
        raise ConfigError("calibration needs at least 2 folds: an in-sample ρ is not reported")
    if n_samples < 3 * folds:
        raise ConfigError(f"calibration needs at least {3 * folds} samples for {folds} folds")


def _calibration_subset(
    inputs: Inputs, options: ScoreOptions, n_samples: int, folds: int, seed: int
) -> Any:
    """``n_samples`` positions stratified over the gradient norm (scored for all samples)."""
    every, norm = range(len(inputs.ids)), replace(options, scores=(GRAD_NORM,))
    cheap = score_positions(inputs.model, inputs.dataset, every, norm)
    subset = stratified_subset({GRAD_NORM: cheap.scores[GRAD_NORM].numpy()}, n_samples, seed)
    if len(subset) < 3 * folds:
        raise ConfigError(
            f"the data has {len(subset)} samples; {folds}-fold cross-validation needs at "
            f"least {3 * folds} (lower --folds, or add data)"
        )
    return subset


def _scored(
    inputs: Inputs, options: ScoreOptions, positions: list[int], progress: ProgressFn | None
) -> ScoreResult:
    """Scores of some samples, each seeded by its dataset position as in a full scan
    (sharded under torchrun)."""
    return score_positions(inputs.model, inputs.dataset, positions, options, progress=progress)


def _calibration_meta(
    config: ScanConfig,
    inputs: Inputs,
    result: ValidationResult,
    attacks: Sequence[str],
    budget: str,
    options: ScoreOptions,
) -> dict[str, dict[str, Any]]:
    """The calibration document's model, data, attack and defence sections."""
    digest = hashlib.sha256()
    for pos in result.indices.tolist():
        digest.update(sample_digest(*inputs.dataset[pos]))
    return {
        "model": {
            "name": config.model.name,
            "architecture": architecture_signature(inputs.model),
            "input_shape": list(result.originals.shape[1:]),
            "checkpoint_sha256": inputs.checkpoint_sha256,
            "score_settings": score_settings(options),
        },
        "data": {
            "fingerprint": digest.hexdigest(),
            "kind": config.data.kind,
            "samples": len(result.indices),
            "ids": list(result.ids),
        },
        "attack": {
            "attacks": list(attacks),
            "budget": budget,
            "seed": result.config.get("seed"),
            "quality": "best PSNR over the attacks, per sample",
            "distributed": result.config.get("distributed"),
        },
        "defense": {"kind": config.defense.kind, **config.defense.params},
    }


def input_space(config: ScanConfig) -> InputSpace:
    """The attacker's input space: pixels un-normalised with the data's ``mean``/``std``."""
    data = config.data
    if data.mean is None:
        return InputSpace()
    return InputSpace.from_normalization(data.mean, data.std or [1.0] * len(data.mean))


__all__ = [
    "ConfigLike",
    "Inputs",
    "ProgressFn",
    "ScoreOptions",
    "calibrate",
    "check_compatible",
    "load_inputs",
    "scan",
    "score_options",
    "score_samples",
    "validate",
]
