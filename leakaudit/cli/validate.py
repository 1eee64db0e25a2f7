"""``leakaudit validate``: parse flags, build the scan config, call
:func:`leakaudit.api.validate`, print the agreement table, write the JSON and the figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from leakaudit import api
from leakaudit.cli import options as opt
from leakaudit.cli.console import handle_errors, stderr_console, stdout_console, warning_line
from leakaudit.cli.progress import validate_progress
from leakaudit.cli.resolve import resolve_config
from leakaudit.distributed import current_world, quiet_unless_main
from leakaudit.errors import ConfigError
from leakaudit.guards import check_run_outputs
from leakaudit.report.files import check_writable, write_atomic
from leakaudit.report.reading import read_report
from leakaudit.report.validation_html import render_validation_html
from leakaudit.report.validation_table import agreement_tables
from leakaudit.validation import ValidationResult

#: ``validate``'s own flags.
ReportIn = Annotated[Path | None, typer.Option(help="Reuse the scores of this scan report (JSON).")]
Demo = Annotated[bool, typer.Option(help="Validate the shipped demo (LeNet, digits).")]
NSamples = Annotated[int, typer.Option(min=3, help="Samples to attack, stratified by risk.")]
Indices = Annotated[
    str | None, typer.Option(help="Attack these dataset positions instead (1,5,9).")
]
RiskScore = Annotated[str | None, typer.Option(help="Score that orders the selection.")]
BatchSize = Annotated[
    int | None,
    typer.Option(
        help="Attack the gradients of batches of B samples as the client's loader forms "
        "them (as scan --batch-size); each batch's B inputs are reconstructed jointly.",
    ),
]
Figure = Annotated[Path | None, typer.Option(help="Write the PNG figure here.")]
HtmlOut = Annotated[
    Path | None,
    typer.Option(
        "--html",
        help="Write a self-contained HTML page here: originals vs reconstructions, "
        "each score against PSNR.",
    ),
]
JsonOut = Annotated[
    str | None, typer.Option("--json", help="Write the validation JSON here ('-': stdout).")
]


def _indices(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--indices {text!r}: expected comma-separated integers") from None


def validate_command(
    ctx: typer.Context,
    report: ReportIn = None,
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
    defense: opt.DefenseFlag = None,
    attacks: opt.Attacks = "dlg,ig",
    budget: opt.BudgetFlag = opt.Budget.standard,
    n_samples: NSamples = 32,
    indices: Indices = None,
    risk_score: RiskScore = None,
    batch_size: BatchSize = None,
    figure: Figure = None,
    html: HtmlOut = None,
    json_path: JsonOut = None,
    seed: opt.Seed = 0,
    device: opt.AttackDevice = opt.Device.auto,
    progress: opt.ShowProgress = True,
    debug: opt.Debug = False,
) -> None:
    """Run real gradient inversion attacks on a stratified subset and report which score
    predicts reconstruction quality. Exit codes: 0 ok, 2 bad input, 3 runtime failure."""
    with handle_errors(debug), quiet_unless_main():
        main = current_world().main  # under torchrun, rank 0 shows progress and writes
        _check_writable(json_path, figure, html)
        raw = read_report(report) if report is not None else None
        # The model and data flags reach the config through ctx.params.
        cfg = resolve_config("validate", ctx.params, opt.INPUT_KEYS, report=raw, report_path=report)
        outputs = {"--json": json_path, "--figure": figure, "--html": html}
        check_run_outputs(cfg, outputs, config, report)
        if figure is not None:
            _check_plots()
        opt.warn_if_trusted(cfg)
        with validate_progress(progress and main, scoring=raw is None) as (scoring, callback):
            result = api.validate(
                cfg, raw, scan_progress=scoring, progress=callback, batch_size=batch_size,
                attacks=[a.strip() for a in attacks.split(",") if a.strip()],
                budget=budget.value, n_samples=n_samples, indices=_indices(indices),
                risk_score=risk_score, seed=seed, device=device.value,
            )  # fmt: skip
        if main:
            _write(result, json_path, figure, html)


def _check_writable(*paths: str | Path | None) -> None:
    """Refuse outputs that cannot be written, before any work."""
    for path in paths:
        if path is not None and str(path) != "-":
            check_writable(path)


def _check_plots() -> None:
    """Refuse ``--figure`` before any work when matplotlib is missing."""
    from leakaudit.report.plots import PLOTS_MISSING

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(f"--figure: {PLOTS_MISSING}") from None


def _write(
    result: ValidationResult, json_path: str | None, figure: Path | None, html: Path | None
) -> None:
    """The agreement tables and sentences, the JSON (``-``: stdout), the figure and the
    HTML page."""
    out = stderr_console() if json_path == "-" else stdout_console()
    for table in agreement_tables(result):
        out.print(table)
    for summary in result.summary.values():
        out.print(summary["sentence"], markup=False)
    for note in result.notes:
        warning_line(note)
    if json_path:
        text = json.dumps({"validation": result.to_dict()}, indent=2, allow_nan=False)
        if json_path == "-":
            stdout_console().out(text, highlight=False)
        else:
            write_atomic(json_path, text + "\n")
    if figure is not None:
        from leakaudit.report.plots import validation_figure

        validation_figure(result, figure)
        stderr_console().print(f"figure written to {figure}", markup=False)
    if html is not None:
        write_atomic(html, render_validation_html(result))
        stderr_console().print(f"HTML report written to {html}", markup=False)
