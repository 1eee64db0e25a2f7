"""``leakaudit validate``: parse flags, build the scan config, call
:func:`leakaudit.validation.validate_config`, print the agreement table, write the JSON
and the figure."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from leakaudit.cli.console import handle_errors, stderr_console, stdout_console, warning_line
from leakaudit.config import ScanConfig, config_from_dict, load_config, with_overrides
from leakaudit.errors import ConfigError, InputError
from leakaudit.validation import ProgressFn, ValidationResult, validate_config


class Budget(str, Enum):
    fast = "fast"
    standard = "standard"
    paper = "paper"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def _defense_section(text: str) -> dict[str, Any]:
    """``"gaussian:sigma=0.01"`` → ``{"kind": "gaussian", "params": {"sigma": 0.01}}``."""
    kind, _, rest = text.partition(":")
    params: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        name, sep, value = item.partition("=")
        try:
            params[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--defense: bad parameter {item!r}; expected NAME=NUMBER") from None
        if not sep:
            raise ConfigError(f"--defense: parameter {item!r} needs =VALUE")
    return {"kind": kind.strip(), "params": params}


def _indices(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--indices {text!r}: expected comma-separated integers") from None


def _read_report(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"--report {path}: cannot read the scan report ({exc})") from None
    if not isinstance(raw, dict) or "samples" not in raw or "config" not in raw:
        raise InputError(f"--report {path}: not a leakaudit scan report (JSON)")
    return raw


@contextmanager
def validate_progress(
    enabled: bool, scoring: bool
) -> Iterator[tuple[ProgressFn | None, ProgressFn | None]]:
    """``(scoring, attacking)`` progress callbacks driving one rich display on stderr."""
    if not enabled:
        yield None, None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr_console(),
    )
    score_task = bar.add_task("scoring samples", total=None, visible=scoring)
    attack_task = bar.add_task("attack iterations", total=None)
    with bar:
        yield (
            lambda done, total: bar.update(score_task, completed=done, total=total),
            lambda done, total: bar.update(attack_task, completed=done, total=total),
        )


def _fmt(value: float | None, spec: str = "+.2f") -> str:
    return "—" if value is None else format(value, spec)


def agreement_tables(result: ValidationResult) -> list[Table]:
    """One table per attack: every score against PSNR and SSIM."""
    tables = []
    for attack in result.reconstructions:
        q = result.quality[attack]
        table = Table(
            title=(
                f"{attack}: median PSNR {float(q['psnr'].median()):.1f} dB, "
                f"median SSIM {float(q['ssim'].median()):.2f}, n = {len(result.indices)}"
            ),
            title_justify="left",
        )
        for col in ("score", "risky when", "ρ PSNR [95% CI]", "p", "τ PSNR", "ρ SSIM", "P@k"):
            table.add_column(col, justify="left" if col in ("score", "risky when") else "right")
        table.add_column("SPEC direction")
        rows = {(a.score, a.metric): a for a in result.agreement if a.attack == attack}
        for score in result.scores:
            p, s = rows[(score, "psnr")], rows.get((score, "ssim"))
            rho = p.spearman
            ci = f" [{rho.ci95[0]:+.2f}, {rho.ci95[1]:+.2f}]" if rho.ci95 else ""
            table.add_row(
                score,
                result.directions[score].split("_")[0],
                (_fmt(rho.value) + ci) if rho.value is not None else "undefined",
                _fmt(rho.p_value, ".2g"),
                _fmt(p.kendall.value),
                _fmt(s.spearman.value) if s else "—",
                f"{p.precision_at_k:.2f} (k={p.k})" if p.precision_at_k is not None else "—",
                p.direction,
            )
        tables.append(table)
    return tables


def validate_command(
    report: Annotated[
        Path | None, typer.Option(help="Reuse the scores of this scan report (JSON).")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config.")] = None,
    demo: Annotated[bool, typer.Option(help="Validate the shipped demo (LeNet, digits).")] = False,
    model: Annotated[str | None, typer.Option(help="Architecture (as for scan).")] = None,
    num_classes: Annotated[int | None, typer.Option(help="Model outputs.")] = None,
    checkpoint: Annotated[str | None, typer.Option(help="Weights file.")] = None,
    trust_checkpoint: Annotated[
        bool, typer.Option(help="Allow unpickling arbitrary objects (unsafe).")
    ] = False,
    data: Annotated[str | None, typer.Option(help="Data root: folder or tensor file.")] = None,
    data_kind: Annotated[str | None, typer.Option(help="Dataset kind (as for scan).")] = None,
    split: Annotated[str | None, typer.Option(help="Dataset split.")] = None,
    first: Annotated[int | None, typer.Option(help="Only the first N samples.")] = None,
    per_class: Annotated[int | None, typer.Option(help="At most N samples per class.")] = None,
    defense: Annotated[
        str | None, typer.Option(help="Defence the attacker faces, e.g. gaussian:sigma=0.01.")
    ] = None,
    attacks: Annotated[str, typer.Option(help="Comma-separated: dlg, idlg, ig.")] = "dlg,ig",
    budget: Annotated[Budget, typer.Option(help="Attack iterations preset.")] = Budget.standard,
    n_samples: Annotated[
        int, typer.Option(min=3, help="Samples to attack, stratified by risk.")
    ] = 32,
    indices: Annotated[
        str | None, typer.Option(help="Attack these dataset positions instead (1,5,9).")
    ] = None,
    risk_score: Annotated[str | None, typer.Option(help="Score that orders the selection.")] = None,
    figure: Annotated[Path | None, typer.Option(help="Write the PNG figure here.")] = None,
    json_path: Annotated[
        str | None, typer.Option("--json", help="Write the validation JSON here ('-': stdout).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seeds selection, noise, attacks, bootstrap.")] = 0,
    device: Annotated[Device, typer.Option(help="Where to attack.")] = Device.auto,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Run real gradient inversion attacks on a stratified subset and report which score
    predicts reconstruction quality. Exit codes: 0 ok, 2 bad input, 3 runtime failure."""
    with handle_errors(debug):
        raw = _read_report(report) if report is not None else None
        if raw is not None and (config or demo):
            raise ConfigError("--report carries its own configuration; drop --config/--demo")
        cfg: ScanConfig
        if raw is not None:
            cfg = config_from_dict(raw["config"])
        elif demo:
            from leakaudit.demo import demo_config

            cfg = demo_config()
        elif config is not None:
            cfg = load_config(config)
        elif data or data_kind:
            cfg = ScanConfig()
        else:
            raise ConfigError("nothing to validate: give --report, --config, --data or --demo")
        overrides: dict[str, Any] = {
            "model.name": model,
            "model.num_classes": num_classes,
            "model.checkpoint": checkpoint,
            "model.trust_checkpoint": True if trust_checkpoint else None,
            "data.root": data,
            "data.kind": data_kind,
            "data.split": split,
            "data.first": first,
            "data.per_class": per_class,
        }
        if defense:
            overrides["defense"] = {
                **_defense_section(defense),
                "target_error": cfg.defense.target_error,
            }
        cfg = with_overrides(cfg, overrides)
        if figure is not None:
            from leakaudit.report.plots import PLOTS_MISSING

            try:
                import matplotlib  # noqa: F401
            except ImportError:
                raise ConfigError(f"--figure: {PLOTS_MISSING}") from None
        if cfg.model.trust_checkpoint:
            warning_line("--trust-checkpoint: the checkpoint may run arbitrary code when loaded")
        with validate_progress(progress, scoring=raw is None) as (scoring, callback):
            result = validate_config(
                cfg,
                report=raw,
                scan_progress=scoring,
                attacks=[a.strip() for a in attacks.split(",") if a.strip()],
                budget=budget.value,
                n_samples=n_samples,
                indices=_indices(indices) if indices else None,
                risk_score=risk_score,
                seed=seed,
                device=device.value,
                progress=callback,
            )
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
                Path(json_path).write_text(text + "\n")
        if figure is not None:
            from leakaudit.report.plots import validation_figure

            validation_figure(result, figure)
            stderr_console().print(f"figure written to {figure}", markup=False)
