"""The terminal format of a validation: one rich table per attack, every score against
PSNR and SSIM."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from leakaudit.validation import ValidationResult


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
        table.add_column("direction held?")
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
