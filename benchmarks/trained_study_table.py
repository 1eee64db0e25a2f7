"""Markdown tables of the trained-model study (see benchmarks/trained_study.py)."""

from __future__ import annotations

from typing import Any

from benchmarks.trained_study_transfer import transfer
from leakaudit.direction import sign
from leakaudit.scores.names import ALL_SCORES, SCORES


def _f(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:+.{digits}f}"


def _ci(ci: list[float] | None) -> str:
    return "—" if not ci else f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _cell(row: dict[str, Any] | None) -> str:
    return "n/r" if row is None else f"{_f(row['rho'])} {_ci(row['ci95'])}"


def _rec(q: dict[str, Any], n: int) -> str:
    return f"{q['recovered']}/{n} ({q['psnr_median']:.1f} dB)"


def setup_table(results: list[dict[str, Any]]) -> list[str]:
    """One row per setting: model, accuracy, defence, budgets, what was recovered."""
    lines = [
        "| setting | test acc. | σ | iDLG iters | IG iters | N | iDLG recovered (median PSNR) "
        "| IG recovered | best of both | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s, q = r["setting"], r["quality"]
        n = len(r["test_positions"])
        lines.append(
            f"| {s['name']} | {r['test_accuracy']:.3f} | {s['sigma']:g} | {s['idlg_iters']} "
            f"| {s['ig_iters']} | {n} | {_rec(q['idlg'], n)} | {_rec(q['ig'], n)} "
            f"| {_rec(q['best'], n)} | {r['wall_seconds']:.0f} |"
        )
    return lines


def score_table(r: dict[str, Any]) -> list[str]:
    """Per score: ρ with best PSNR [CI], partial ρ, ρ with each attack's PSNR."""
    corr = r["correlations"]
    if corr is None:
        return [f"**{r['setting']['name']}**: {r['note']}."]
    lines = [
        f"**{r['setting']['name']}** (N = {len(r['test_positions'])}; ρ > 0: a larger "
        "score goes with a better reconstruction)",
        "",
        "| score | ρ best PSNR [95% CI] | partial ρ | ρ iDLG [95% CI] | ρ IG [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for k in ALL_SCORES:
        b = corr[k]["best"]
        lines.append(
            f"| {k} | {_f(b['rho'])} {_ci(b['ci95'])} | {_f(b['partial_rho'])} "
            f"| {_cell(corr[k]['idlg'])} | {_cell(corr[k]['ig'])} |"
        )
    return lines


def calibration_table(results: list[dict[str, Any]]) -> list[str]:
    """Held-out ρ of the calibration procedure vs the best single score in hindsight."""
    lines = [
        "| setting | held-out ρ (CV) [95% CI] | rule chosen (per fold) | best single in "
        "hindsight: ρ [95% CI] |",
        "|---|---|---|---|",
    ]
    for r in results:
        c = r.get("calibration")
        if not c or c["status"] != "calibrated":
            lines.append(f"| {r['setting']['name']} | not calibrated | — | — |")
            continue
        folds = ", ".join(c["folds_chosen"])
        lines.append(
            f"| {r['setting']['name']} | {_f(c['heldout_rho'])} {_ci(c['heldout_ci95'])} "
            f"| {c['chosen']} ({folds}) | {c['hindsight_best']}: {_f(c['hindsight_rho'])} "
            f"{_ci(c['hindsight_ci95'])} |"
        )
    return lines


def summary_table(results: list[dict[str, Any]]) -> list[str]:
    """Per score, its ρ with the best PSNR in every setting where one is reported, and in
    how many settings the 95% interval agrees with (or contradicts) the shipped direction."""
    done = [r for r in results if r["correlations"]]
    head = " | ".join(r["setting"]["name"] for r in done)
    lines = [
        f"| score | shipped direction | {head} | agrees / contradicts |",
        "|---" * (len(done) + 3) + "|",
    ]
    for k in ALL_SCORES:
        want = sign(SCORES[k].direction)  # riskier = better reconstruction = higher PSNR
        cells, agree, against = [], 0, 0
        for r in done:
            b = r["correlations"][k]["best"]
            lo, hi = b["ci95"] or (0.0, 0.0)
            agree += want * lo > 0 and want * hi > 0
            against += want * lo < 0 and want * hi < 0
            cells.append(f"{_f(b['rho'])}{'·' if lo <= 0 <= hi else ''}")
        lines.append(f"| {k} | {SCORES[k].direction} | {' | '.join(cells)} | {agree} / {against} |")
    return lines


def transfer_table(results: list[dict[str, Any]]) -> list[str]:
    """`calibrate` as shipped (32 stratified samples) vs fixed scores, on the other samples."""
    lines = [
        "| setting | calibrated splits | ρ calibrated (held-out samples) | rules chosen "
        "| ρ grad_norm (default) | best fixed score: ρ |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if not r["correlations"]:
            continue
        t = transfer(r)
        if not t["calibrated_splits"]:
            lines.append(f"| {r['setting']['name']} | 0/{t['splits']} | — | — | — | — |")
            continue
        fixed = t["fixed_rho_mean"]
        best = max(fixed, key=lambda k: fixed[k])
        rules = ", ".join(sorted(set(t["chosen_each"])))
        lines.append(
            f"| {r['setting']['name']} | {t['calibrated_splits']}/{t['splits']} "
            f"| {_f(t['calibrated_rho_mean'])} | {rules} | {_f(fixed['grad_norm'])} "
            f"| {best}: {_f(fixed[best])} |"
        )
    return lines


def report(results: list[dict[str, Any]]) -> str:
    """The study's markdown: setup, summary, calibration, per-setting detail."""
    parts = ["## Setup", "", *setup_table(results), "", "## ρ with best-attack PSNR", ""]
    parts += [
        *summary_table(results),
        "",
        "(ρ > 0: a larger score goes with a better reconstruction, i.e. larger is riskier; "
        "· : the 95% interval contains 0)",
        "",
    ]
    parts += ["## Calibration (held out) vs hindsight", "", *calibration_table(results), ""]
    parts += ["## `calibrate` as shipped, on samples it did not see", ""]
    parts += [*transfer_table(results), ""]
    parts += ["## Per setting", ""]
    for r in results:
        parts += [*score_table(r), ""]
    return "\n".join(parts)
