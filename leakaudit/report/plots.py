"""The validation figure: originals beside reconstructions for the riskiest and safest
samples, and each score against PSNR per attack (matplotlib, optional dependency)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

if TYPE_CHECKING:
    from leakaudit.validation import ValidationResult

PLOTS_MISSING = (
    "the figure needs matplotlib, which is not installed: pip install 'leakaudit[plots]'"
)


def _figure_class() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(PLOTS_MISSING) from exc
    return Figure


def _image(x: Tensor) -> tuple[np.ndarray, str | None]:
    """``[C, H, W]`` in [0, 1] → an array imshow takes, and the colour map."""
    a = x.detach().cpu().numpy()
    if a.shape[0] == 1:
        return a[0], "gray"
    return np.clip(np.transpose(a[:3], (1, 2, 0)), 0, 1), None


def _scatter_scale(values: np.ndarray) -> str:
    pos = values[np.isfinite(values)]
    if pos.size and pos.min() > 0 and pos.max() / pos.min() > 100:
        return "log"
    return "linear"


def validation_figure(result: ValidationResult, path: str | Path, *, n_show: int = 4) -> Path:
    """Draw the validation figure and save it as a PNG.

    Top: one column per shown sample (the ``n_show`` riskiest, then the ``n_show``
    safest under the risk score), the original in the first row and each attack's
    reconstruction below it with its PSNR. Bottom: one panel per attack × score, the
    score (x) against PSNR (y), titled with Spearman ρ.

    Args:
        result: what :func:`leakaudit.validation.validate` returned.
        path: where to write the PNG.
        n_show: samples shown at each end of the ranking.

    Returns:
        The path written.

    Raises:
        ImportError: matplotlib is missing (the message says how to install it).
    """
    figure_cls = _figure_class()
    n = len(result.indices)
    attacks = list(result.reconstructions)
    k = min(n_show, (n + 1) // 2)
    shown = list(range(k)) + [j for j in range(max(k, n - k), n)]
    cols_top, cols_bottom = max(len(shown), 1), max(len(result.scores), 1)
    width = max(1.5 * cols_top, 2.4 * cols_bottom)
    height = 1.6 * (1 + len(attacks)) + 2.3 * len(attacks) + 0.8
    fig = figure_cls(figsize=(width, height), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.6 * (1 + len(attacks)), 2.3 * len(attacks)])
    _draw_samples(top, result, shown, k)
    _draw_scatter(bottom, result)
    out = Path(path)
    fig.savefig(out, dpi=110, format="png")
    return out


def _draw_samples(top: Any, result: ValidationResult, shown: list[int], k: int) -> None:
    """One column per shown sample (the first ``k`` are the riskiest): the original, then
    each attack's reconstruction with its PSNR."""
    attacks = list(result.reconstructions)
    top.suptitle(
        f"riskiest → safest by {result.risk_score} "
        f"(left {k}: riskiest, right {len(shown) - k}: safest)",
        fontsize=10,
    )
    grid = top.subplots(1 + len(attacks), max(len(shown), 1), squeeze=False)
    rows = [("original", result.originals)] + [(a, result.reconstructions[a]) for a in attacks]
    for r, (name, images) in enumerate(rows):
        for c, j in enumerate(shown):
            ax = grid[r][c]
            img, cmap = _image(images[j])
            ax.imshow(img, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                tag = "risky" if c < k else "safe"
                ax.set_title(f"{tag} #{j + 1}\nid {result.ids[j]}", fontsize=7)
            else:
                ax.set_xlabel(f"{result.quality[name]['psnr'][j]:.1f} dB", fontsize=7)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)


def _draw_scatter(bottom: Any, result: ValidationResult) -> None:
    """One panel per attack × score: the score (x) against PSNR (y), titled with ρ."""
    attacks, scores = list(result.reconstructions), list(result.scores)
    bottom.suptitle(
        "each score against PSNR, one point per validated sample "
        f"(colour: rank by {result.risk_score}, yellow = riskiest)",
        fontsize=10,
    )
    panels = bottom.subplots(len(attacks), max(len(scores), 1), squeeze=False)
    rho = {(a.attack, a.score): a.spearman.value for a in result.agreement if a.metric == "psnr"}
    order = np.arange(len(result.indices))
    for r, attack in enumerate(attacks):
        y = result.quality[attack]["psnr"].numpy()
        for c, score in enumerate(scores):
            ax = panels[r][c]
            x = result.scores[score].numpy()
            ax.scatter(x, y, s=12, c=order, cmap="viridis_r")
            ax.set_xscale(_scatter_scale(x))
            value = rho.get((attack, score))
            label = f"ρ = {value:+.2f}" if value is not None else "ρ undefined"
            ax.set_title(f"{score}\n{label}", fontsize=8)
            ax.tick_params(labelsize=6)
            if c == 0:
                ax.set_ylabel(f"{attack}\nPSNR (dB)", fontsize=8)
