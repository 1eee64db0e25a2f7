"""``leakaudit scan``: parse flags, build the config, call :func:`leakaudit.api.scan`,
write the report, exit with the gate's code."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from leakaudit import api
from leakaudit.cli import options as opt
from leakaudit.cli.console import handle_errors, stderr_console, warning_line
from leakaudit.cli.flags import parse_allow, parse_rule_flag
from leakaudit.cli.output import write_outputs
from leakaudit.cli.progress import scan_progress
from leakaudit.cli.resolve import resolve_config
from leakaudit.config import ScanConfig
from leakaudit.distributed import (
    current_world,
    partial_files,
    quiet_unless_main,
    remove_partials,
)
from leakaudit.errors import EXIT_GATE_FAILED, ConfigError, RuntimeFailure
from leakaudit.gate import expired_warning
from leakaudit.guards import check_scan_outputs
from leakaudit.io.imagefolder import hide_skipped_paths
from leakaudit.report.document import Report
from leakaudit.report.escape import count
from leakaudit.report.files import check_writable
from leakaudit.report.formats import FormatName
from leakaudit.resume import check_partial_path

#: ``scan``'s own flags (the model and data flags are shared: :mod:`leakaudit.cli.options`).
Demo = Annotated[
    bool, typer.Option("--demo", help="Scan the shipped demo: LeNet on scikit-learn digits.")
]
Scores = Annotated[
    str | None,
    typer.Option(
        help="Scores to compute: auto (default: what the ranking, gate and calibration "
        "read), all, or a comma-separated list."
    ),
]
RiskScore = Annotated[str | None, typer.Option(help="Score that ranks the samples.")]
CalibrationIn = Annotated[
    str | None,
    typer.Option(
        help="calibration.json from `leakaudit calibrate`: predict each sample's "
        "attack PSNR and rank by it."
    ),
]
DefenseIn = Annotated[
    str | None,
    typer.Option(
        help="Defence: none, gaussian:sigma=S, laplace:scale=B, pruning:ratio=R, dp:clip=C,sigma=S."
    ),
]
TargetError = Annotated[
    float | None, typer.Option(help="τ of the σ what-if (I²F reconstruction error).")
]
ScanDevice = Annotated[opt.Device | None, typer.Option(help="Where to compute.")]
Dtype = Annotated[str | None, typer.Option(help="float32 or float64.")]
MaxIter = Annotated[int | None, typer.Option(help="Lanczos steps per operator.")]
NProbes = Annotated[int | None, typer.Option(help="I²F trace-estimator probes.")]
ChunkSize = Annotated[int | None, typer.Option(help="Samples scored together.")]
BatchSize = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Score the gradients of batches of B samples as the client's loader forms them "
        "(seeded shuffle); each sample keeps its block of the batch's I²F.",
    ),
]
LocalSteps = Annotated[
    int | None,
    typer.Option(
        help="Score the FedAvg update of E local SGD steps on each sample (or batch) "
        "instead of its gradient (torch.func backend).",
    ),
]
LocalLr = Annotated[float | None, typer.Option(help="Learning rate η of the local steps.")]
ScanSeed = Annotated[int | None, typer.Option(help="Seed of probes and start vectors.")]
FailOn = Annotated[
    list[str] | None,
    typer.Option(
        help="Gate rule SCORE<VALUE or SCORE>VALUE (repeatable); VALUE a number or a "
        "percentile pNN[@baseline]; :FRACTION sets the rule's own tolerated fraction, "
        "e.g. 'i2f<0.5', 'grad_norm>p95@baseline:5%'."
    ),
]
MaxFraction = Annotated[
    float,
    typer.Option(help="Fraction of risky samples --fail-on rules without :FRACTION tolerate."),
]
BaselineIn = Annotated[
    str | None,
    typer.Option(
        help="Previous JSON report: fail only on samples newly offending a rule; "
        "percentile rules read its values."
    ),
]
Allow = Annotated[list[str] | None, typer.Option(help="Allowlist SAMPLE_ID=REASON (repeatable).")]
TopK = Annotated[int | None, typer.Option(help="Rows of the riskiest-samples table.")]
JsonOut = Annotated[
    str | None, typer.Option("--json", help="Write the JSON report here ('-': stdout).")
]
Format = Annotated[
    FormatName | None, typer.Option("--format", "-f", help="Report format for stdout/--output.")
]
Output = Annotated[
    str | None, typer.Option("--output", "-o", help="Write the --format report here.")
]
Resume = Annotated[
    bool, typer.Option(help="Continue an interrupted scan from its partial results.")
]
Partial = Annotated[
    str | None, typer.Option(help="Partial-results file (default: <json>.partial.pt).")
]
Redact = Annotated[
    bool,
    typer.Option(
        "--redact",
        help="Hash sample ids and keep only file names of paths in the report "
        "(the id map stays in ~/.cache/leakaudit).",
    ),
]


def scan_command(
    ctx: typer.Context,
    config: opt.ConfigFile = None,
    demo: Demo = False,
    model: opt.Model = None,
    num_classes: opt.NumClasses = None,
    checkpoint: opt.Checkpoint = None,
    trust_checkpoint: opt.TrustCheckpoint = False,
    random_init: opt.RandomInit = False,
    data: opt.Data = None,
    data_kind: opt.DataKind = None,
    split: opt.Split = None,
    first: opt.First = None,
    per_class: opt.PerClass = None,
    scores: Scores = None,
    risk_score: RiskScore = None,
    calibration: CalibrationIn = None,
    defense: DefenseIn = None,
    target_error: TargetError = None,
    device: ScanDevice = None,
    dtype: Dtype = None,
    max_iter: MaxIter = None,
    n_probes: NProbes = None,
    chunk_size: ChunkSize = None,
    batch_size: BatchSize = None,
    local_steps: LocalSteps = None,
    local_lr: LocalLr = None,
    seed: ScanSeed = None,
    fail_on: FailOn = None,
    max_fraction: MaxFraction = 0.0,
    baseline: BaselineIn = None,
    allow: Allow = None,
    top_k: TopK = None,
    json_path: JsonOut = None,
    fmt: Format = None,
    output: Output = None,
    resume: Resume = False,
    partial: Partial = None,
    redact: Redact = False,
    progress: opt.ShowProgress = True,
    debug: opt.Debug = False,
) -> None:
    """Score every sample, rank by risk, write the report, apply the CI gate.

    Exit codes: 0 gate passed, 1 gate failed, 2 usage/config/input error, 3 runtime failure.
    """
    # The model, data, scoring and output flags reach the config through ctx.params.
    with handle_errors(debug):
        cfg = resolve_config(
            "scan",
            ctx.params,
            {**opt.INPUT_KEYS, **opt.SCAN_KEYS},
            extra=lambda base: _gate_overrides(
                base, fail_on, max_fraction, allow, redact, baseline
            ),
        )
        base = config.parent if config is not None else None
        check_scan_outputs(cfg, config=config, partial=partial)
        hide_skipped_paths(cfg.output.redact)
        run_scan(cfg, resume=resume, partial=partial, show_progress=progress, base_dir=base)


def _gate_overrides(
    base: ScanConfig,
    fail_on: list[str] | None,
    max_fraction: float,
    allow: list[str] | None,
    redact: bool,
    baseline: str | None = None,
) -> dict[str, Any]:
    """``--fail-on`` and ``--allow`` added to the configured rules and allowlist;
    ``--redact``; ``--baseline`` replaces ``gate.baseline``."""
    overrides: dict[str, Any] = {}
    if baseline is not None:
        overrides["gate.baseline"] = baseline
    if fail_on:
        flag_rules = [asdict(parse_rule_flag(r, max_fraction)) for r in fail_on]
        overrides["gate.rules"] = [asdict(r) for r in base.gate.rules] + flag_rules
    if allow:
        entries = [asdict(e) for e in base.gate.allowlist]
        overrides["gate.allowlist"] = entries + [parse_allow(a) for a in allow]
    if redact:
        overrides["output.redact"] = True
    return overrides


def run_scan(
    cfg: ScanConfig,
    *,
    resume: bool,
    partial: str | None,
    show_progress: bool,
    base_dir: Path | None = None,
) -> None:
    """Check outputs, scan, write, exit with the gate's code. Under torchrun every rank
    scans its shard; only rank 0 shows progress, writes and exits with the gate's code
    (the other ranks exit 0 once their shard is delivered: docs/scaling.md)."""
    world = current_world()
    main = world.main
    batch = cfg.scores.batch_size is not None  # a batch scan keeps no partial results
    if batch and (resume or partial):
        raise ConfigError(api.BATCH_NO_PARTIALS)
    resume = resume or (world.restart > 0 and not batch)  # torchrun --max-restarts
    sidecar = _check_outputs(cfg, resume, partial, quiet=not main)
    if main:
        opt.warn_if_trusted(cfg)
    try:
        with scan_progress(show_progress and main) as callback, quiet_unless_main():
            report = api.scan(
                cfg,
                progress=callback,
                resume_path=sidecar if resume else None,
                partial_path=sidecar,
                base_dir=base_dir,
                images=cfg.output.top_k if cfg.output.format == FormatName.html.value else 0,
            )
    except KeyboardInterrupt:
        if sidecar and partial_files(sidecar):
            raise RuntimeFailure(
                f"interrupted; finished samples are saved in {sidecar}: "
                "rerun the same command with --resume"
            ) from None
        raise
    if not main:
        return
    write_outputs(report, cfg)
    if sidecar:
        remove_partials(sidecar)
    _verdict(report)


def _check_outputs(
    cfg: ScanConfig, resume: bool, partial: str | None, quiet: bool = False
) -> str | None:
    """Check that every output can be written before scanning; return the partial-results
    file (``--partial``, else ``<json>.partial.pt``, else none)."""
    out = cfg.output
    for path in (out.json, out.output):
        if path and path != "-":
            check_writable(path)
    sidecar = partial or (f"{out.json}.partial.pt" if out.json and out.json != "-" else None)
    if cfg.scores.batch_size is not None:
        return None  # a batch scan keeps no partial results
    if resume and sidecar is None:
        raise ConfigError("--resume needs --json PATH or --partial PATH to find partial results")
    if sidecar:
        for flag, path in (("--json", out.json), ("--output", out.output)):
            if path and path != "-" and Path(path).resolve() == Path(sidecar).resolve():
                raise ConfigError(f"--partial {sidecar} is the {flag} report; choose another")
        check_writable(sidecar)
        check_partial_path(sidecar)
        found = bool(partial_files(sidecar))
        if resume and not found and not quiet:
            warning_line(f"no partial results at {sidecar}; starting from the beginning")
        if not resume and found and not quiet:
            warning_line(f"replacing the partial results in {sidecar} (--resume continues them)")
    return sidecar


def _verdict(report: Report) -> None:
    """Warnings and the gate's verdict on stderr; a failed gate exits 1."""
    err = stderr_console()
    for line in report.summary["non_converged"][:1]:
        n_bad = count(len(report.summary["non_converged"]), "sample")
        warning_line(
            f"{n_bad} did not converge (first: {line}); try a larger --max-iter or --dtype float64"
        )
    for name in report.gate.unused_allowlist:
        warning_line(f"allowlisted sample {name!r} is not in this scan")
    for entry in report.gate.expired_allowlist:
        warning_line(expired_warning(entry))
    failed = [r for r in report.gate.rules if not r.passed]
    new = "new " if report.gate.baseline is not None else ""
    if failed:
        err.print(
            f"gate failed: {len(report.gate.offending)} {new}risky samples "
            f"({'; '.join(f'{r.describe()}: {r.tally()}' for r in failed)})",
            markup=False,
            style="bold red",
        )
        raise typer.Exit(EXIT_GATE_FAILED)
    n_rules = len(report.gate.rules)
    if not report.gate.configured:
        err.print(
            "gate: not configured (no gate.rules or --fail-on); "
            f"{count(report.summary['num_samples'], 'sample')} in "
            f"{report.summary['seconds']:.1f} s",
            markup=False,
        )
        return
    known = sum(len(r.known) for r in report.gate.rules)
    err.print(
        f"gate passed ({n_rules} rule{'s' if n_rules != 1 else ''}"
        + (f"; {known} known risky in the baseline, not counted" if known else "")
        + "); "
        f"{count(report.summary['num_samples'], 'sample')} in {report.summary['seconds']:.1f} s",
        markup=False,
        style="green",
    )
