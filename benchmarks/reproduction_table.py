"""Markdown tables of the reproduction study, from ``run_setting`` results.

Sign convention: ρ is Spearman's correlation between the raw score and the
reconstruction MSE. ρ > 0 means samples with a *smaller* score were reconstructed
better (smaller is riskier); ρ < 0 means a *larger* score is riskier.
"""

from __future__ import annotations

from typing import Any

from benchmarks.reproduction_run import CONDITIONS, i2f_calibration
from leakaudit.scores.names import ALL_SCORES

_TITLES = {
    "idlg": "iDLG (L2), undefended",
    "ig": "IG (cosine), undefended",
    "idlg+noise": "iDLG (L2), Gaussian noise",
}


def cell(corr: dict[str, Any]) -> str:
    """``+0.42 [+0.25, +0.57]``, with ``*`` when the interval excludes 0, or ``undefined``."""
    if corr.get("rho") is None:
        return f"undefined ({corr.get('undefined')})"
    text = f"{corr['rho']:+.2f}"
    ci = corr.get("ci95")
    if ci is None:
        return text + " [no CI]"
    star = "*" if ci[0] > 0 or ci[1] < 0 else ""
    return f"{text} [{ci[0]:+.2f}, {ci[1]:+.2f}]{star}"


def setting_table(res: dict[str, Any]) -> str:
    """One setting: header lines (size, budgets, times, PSNR) and the ρ table."""
    s = res["setting"]
    sec = res["seconds"]
    q = res["quality"]
    cal = i2f_calibration(
        res["samples"]["scores"]["i2f"], res["samples"]["mse"]["idlg+noise"], res["d"]
    )
    lines = [
        f"### {s['arch']} × {s['dataset']} — {s['channels']}×{s['image_size']}×"
        f"{s['image_size']} (d = {res['d']}), N = {s['n']}, seed {s['seed']}",
        "",
        f"- scan: {sec['scan']:.0f} s ({res['dtype']}, {100 * res['converged']:.0f}% converged, "
        f"median {res['lanczos_steps_median']:.0f} Lanczos steps, {s['n_probes']} I²F probes)",
        f"- iDLG {s['idlg_iters']} L-BFGS iterations: {sec['idlg']:.0f} s; "
        f"IG {s['ig_iters']} Adam iterations × 1 restart: {sec['ig']:.0f} s; "
        f"iDLG under noise σ = {res['sigma']:.3g}: {sec['idlg+noise']:.0f} s; "
        f"total {sec['total']:.0f} s",
        "- PSNR median [10th–90th percentile]: "
        + "; ".join(
            f"{_TITLES[k]} {q[k]['psnr_median']:.1f} dB "
            f"[{q[k]['psnr_q10']:.1f}–{q[k]['psnr_q90']:.1f}]"
            for k, _, _ in CONDITIONS
        ),
        f"- I²F calibration under noise: measured ‖x̂ − x*‖ / predicted I²F, median "
        f"{cal['median_measured_over_predicted']:.2f} "
        f"[{cal['q10']:.2f}–{cal['q90']:.2f}] over {cal['n_finite']} samples",
        "",
        "| score | " + " | ".join(_TITLES[k] for k, _, _ in CONDITIONS) + " |",
        "|---|" + "---|" * len(CONDITIONS),
    ]
    for score in ALL_SCORES:
        row = [cell(res["correlations"][k][score]) for k, _, _ in CONDITIONS]
        lines.append(f"| `{score}` | " + " | ".join(row) + " |")
    return "\n".join(lines)


def summary_table(results: list[dict[str, Any]]) -> str:
    """Across every setting × condition: how often each score's ρ is significant, by sign."""
    lines = [
        "| score | cells | mean ρ | mean \\|ρ\\| | ρ > 0* (smaller riskier) "
        "| ρ < 0* (larger riskier) | not significant |",
        "|---|---|---|---|---|---|---|",
    ]
    for score in ALL_SCORES:
        vals, pos, neg = [], 0, 0
        for res in results:
            for key, _, _ in CONDITIONS:
                c = res["correlations"][key][score]
                if c.get("rho") is None:
                    continue
                vals.append(c["rho"])
                ci = c.get("ci95")
                if ci is not None and ci[0] > 0:
                    pos += 1
                elif ci is not None and ci[1] < 0:
                    neg += 1
        if not vals:
            lines.append(f"| `{score}` | 0 | undefined | undefined | 0 | 0 | 0 |")
            continue
        mean = sum(vals) / len(vals)
        mabs = sum(abs(v) for v in vals) / len(vals)
        lines.append(
            f"| `{score}` | {len(vals)} | {mean:+.2f} | {mabs:.2f} | {pos} | {neg} "
            f"| {len(vals) - pos - neg} |"
        )
    return "\n".join(lines)


def report(results: list[dict[str, Any]], wall_seconds: float, merged: bool = False) -> str:
    """The whole study as markdown (``merged``: tabulated from saved per-setting files)."""
    parts = [
        "## Spearman ρ(score, reconstruction MSE) with 95% bootstrap intervals",
        "",
        "ρ > 0: samples with a smaller score were reconstructed better (smaller is "
        "riskier); ρ < 0: a larger score is riskier. `*`: the 95% interval excludes 0.",
        "",
    ]
    for res in results:
        parts += [setting_table(res), ""]
    parts += [
        "## Summary over settings and attacks",
        "",
        summary_table(results),
        "",
        (
            f"Sum of the settings' wall times (tabulated from saved files): {wall_seconds:.0f} s."
            if merged
            else f"Wall time of the study: {wall_seconds:.0f} s."
        ),
    ]
    return "\n".join(parts) + "\n"
