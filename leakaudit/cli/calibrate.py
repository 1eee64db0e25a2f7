"""``leakaudit calibrate``: attack a stratified subset, learn which score predicts the
attack on this model, fit score → PSNR, write ``calibration.json`` (docs/calibration.md)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from leakaudit import api
from leakaudit.calibration.document import Calibration
from leakaudit.cli import options as opt
from leakaudit.cli.console import handle_errors, stderr_console, stdout_console, warning_line
from leakaudit.cli.progress import validate_progress
from leakaudit.cli.resolve import resolve_config
from leakaudit.distributed import current_world, quiet_unless_main
from leakaudit.guards import check_run_outputs
from leakaudit.report.escape import count
from leakaudit.report.files import check_writable, write_atomic

#: ``--n-samples`` too: torchrun's parser takes ``--n`` for an abbreviation of its flags.
NSamples = Annotated[int, typer.Option("--n", "--n-samples", min=6, help="Samples to attack.")]

#: Printed when the demo's attacks fail: where to see calibration work instead.
DEMO_HINT = (
    "the demo LeNet resists these attacks at this budget. To see calibration work on a "
    "trained model the attack breaks, run from a leakaudit checkout: leakaudit calibrate "
    "--config sample_configs/digits_mlp.yaml --attacks ig --budget fast --n 16 "
    "(docs/calibration.md)"
)


def calibrate_command(
    ctx: typer.Context,
    config: opt.ConfigFile = None,
    demo: Annotated[bool, typer.Option(help="Calibrate the shipped demo (LeNet, digits).")] = False,
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
    attacks: opt.Attacks = "idlg,ig",
    budget: opt.BudgetFlag = opt.Budget.standard,
    n: NSamples = 32,
    folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds.")] = 4,
    min_psnr: Annotated[float, typer.Option(help="PSNR (dB) that counts as recovered.")] = 15.0,
    min_gain: Annotated[
        float, typer.Option(help="dB over the best constant image that counts as recovered.")
    ] = 6.0,
    output: Annotated[
        str, typer.Option("--output", "-o", help="Write calibration.json here ('-': stdout).")
    ] = "calibration.json",
    seed: opt.Seed = 0,
    device: opt.AttackDevice = opt.Device.auto,
    progress: opt.ShowProgress = True,
    debug: opt.Debug = False,
) -> None:
    """Learn which score predicts a real attack on THIS model and map it to PSNR; then
    `leakaudit scan --calibration calibration.json`. Exit codes: 0 calibrated, 1 the
    attacks recovered too few samples to calibrate, 2 bad input, 3 runtime failure."""
    with handle_errors(debug), quiet_unless_main():
        main = current_world().main  # under torchrun, rank 0 shows progress and writes
        if output != "-":
            check_writable(output)
        cfg = resolve_config("calibrate", ctx.params, opt.INPUT_KEYS)
        check_run_outputs(cfg, {"--output": None if output == "-" else output}, config)
        opt.warn_if_trusted(cfg)
        with validate_progress(progress and main, scoring=True) as (scoring, callback):
            cal = api.calibrate(
                cfg,
                n_samples=n,
                attacks=[a.strip() for a in attacks.split(",") if a.strip()],
                budget=budget.value,
                folds=folds,
                seed=seed,
                device=device.value,
                min_psnr_db=min_psnr,
                min_gain_db=min_gain,
                progress=callback,
                scan_progress=scoring,
            )
        if main:
            _finish(cal, output, demo)


def _finish(cal: Calibration, output: str, demo: bool) -> None:
    """Write the results; exit 1 when there was nothing to calibrate (the demo's hint)."""
    _write(cal, output)
    if not cal.usable:
        if demo:
            warning_line(DEMO_HINT)
        raise typer.Exit(1)


def _write(cal: Calibration, output: str) -> None:
    """The summary (stderr when the JSON goes to stdout) and calibration.json."""
    out = stderr_console() if output == "-" else stdout_console()
    rec = cal.recovery
    out.print(
        f"attacked {count(rec['attacked'], 'sample')}: {rec['recovered']} recovered "
        f"(PSNR ≥ {rec['min_psnr_db']:g} dB and ≥ {rec['min_gain_db']:g} dB over the best "
        f"constant image); median PSNR {rec['median_psnr_db']:.1f} dB, "
        f"best {rec['max_psnr_db']:.1f} dB",
        markup=False,
    )
    if cal.usable:
        out.print(candidate_table(cal))
        proc = cal.procedure
        ci = proc.get("ci95")
        ci_text = f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""
        rho = proc.get("cv_spearman")
        out.print(
            f"chosen: {cal.chosen.name if cal.chosen else '?'}; held-out Spearman ρ of the "
            f"calibrated ranking with PSNR: {rho:+.2f}{ci_text} ({proc.get('k')}-fold)"
            if rho is not None
            else "chosen rule has no defined held-out ρ",
            markup=False,
        )
    else:
        warning_line(str(rec.get("reason", "nothing to calibrate")))
    text = json.dumps(cal.to_dict(), indent=2, allow_nan=False)
    if output == "-":
        stdout_console().out(text, highlight=False)
    else:
        write_atomic(output, text + "\n")
        out.print(f"calibration written to {output}", markup=False)


def candidate_table(cal: Calibration, rows: int = 8) -> Table:
    """The best candidates by held-out Spearman ρ with PSNR."""
    table = Table(
        title="Each score's Spearman ρ with the attack's PSNR on these samples (descriptive)",
        title_justify="left",
    )
    for col in ("rule", "ρ PSNR", "95% CI", "partial ρ¹"):
        table.add_column(col, justify="left" if col == "rule" else "right")
    for c in cal.candidates[:rows]:
        ci = c.get("ci95")
        first = c["scores"][0]
        partial = (cal.confounds.get(first) or {}).get("partial_spearman_quality")
        sign = c["signs"][0]
        table.add_row(
            c["name"],
            _num(c.get("spearman")),
            f"[{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "–",
            _num(None if partial is None else sign * partial) if len(c["scores"]) == 1 else "–",
        )
    table.caption = (
        "not held out, and the best of several is optimistic: the held-out ρ below is the "
        "figure to trust. ¹ controlling for the images' mean and contrast; "
        "↑ larger is riskier, ↓ smaller"
    )
    return table


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:+.2f}"
