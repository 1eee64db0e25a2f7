"""The HTML page of a validation (``leakaudit validate --html``): what the attacks
reconstructed and whether each score predicted it.

One self-contained page (:mod:`leakaudit.report.html_page`): the summary sentences, an
agreement table per attack, the originals of the riskiest and safest validated samples
above each attack's reconstruction with its PSNR, and one scatter per attack × score of
the score against PSNR, the riskier end of the score labelled (the run's risk view,
``ValidationResult.directions``) and dashed lines at :data:`PSNR_BANDS_DB`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from leakaudit.direction import Direction
from leakaudit.report.html_page import figure, image, page, table
from leakaudit.report.png import image_png
from leakaudit.report.svg import esc, scatter_svg

if TYPE_CHECKING:
    from torch import Tensor

    from leakaudit.metrics.agreement import Agreement
    from leakaudit.validation import ValidationResult

#: PSNR levels drawn on the scatters (docs/calibration.md): below 12 dB nothing of the
#: image is recognisable, above 25 dB the reconstruction is a close copy.
PSNR_BANDS_DB = (12.0, 25.0)


def shown_samples(n: int, n_show: int) -> tuple[list[int], int]:
    """Positions shown of ``n`` samples ordered riskiest first: the ``k`` riskiest then
    the ``k`` safest (``k = min(n_show, ⌈n/2⌉)``), and ``k``."""
    k = min(n_show, (n + 1) // 2)
    return list(range(k)) + list(range(max(k, n - k), n)), k


def _rho(a: Agreement | None) -> str:
    if a is None or a.spearman.value is None:
        return "ρ undefined"
    ci = a.spearman.ci95
    return f"ρ = {a.spearman.value:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "")


def _agreement(result: ValidationResult) -> list[str]:
    parts = ["<h2>Which score predicts reconstruction quality</h2>"]
    parts += [f"<p>{esc(s['sentence'])}</p>" for s in result.summary.values()]
    parts += [f'<p class="muted">{esc(note)}</p>' for note in result.notes]
    for attack in result.reconstructions:
        rows = {a.score: a for a in result.agreement if a.attack == attack and a.metric == "psnr"}
        cells = [
            [
                f'<td class="id">{esc(score)}</td>',
                esc(result.directions[score].replace("_", " ")),
                esc(_rho(rows.get(score))),
                esc(rows[score].direction if score in rows else "undefined"),
            ]
            for score in result.scores
        ]
        headers = [f"{attack}: score", "assumed", "Spearman ρ with PSNR [95% CI]", "direction"]
        parts.append(table(headers, cells, class_="agreement", data_attack=attack))
    return parts


def _pairs(result: ValidationResult, n_show: int) -> list[str]:
    shown, k = shown_samples(len(result.indices), n_show)
    attacks = list(result.reconstructions)
    ids = result.ids
    labels = [f"label {int(y)}" for y in result.labels]
    rows = [["original", *(_cell(result.originals[j], ids[j], labels[j]) for j in shown)]]
    for a in attacks:
        psnr, images = result.quality[a]["psnr"], result.reconstructions[a]
        rows.append([esc(a), *(_cell(images[j], ids[j], f"{psnr[j]:.1f} dB") for j in shown)])
    headers = ["", *(f"{'risky' if c < k else 'safe'} · {ids[j]}" for c, j in enumerate(shown))]
    return [
        "<h2>Originals and reconstructions</h2>",
        f'<p class="muted">Left {k}: the riskiest validated samples by '
        f"{esc(result.risk_score)}; right {len(shown) - k}: the safest. Below each original, "
        "what each attack reconstructed from the shared gradient, with its PSNR.</p>",
        table(headers, rows, id="pairs", class_="grid-table"),
    ]


def _cell(x: Tensor, sample_id: str, caption: str) -> str:
    """An image of ``x`` ``[C, H, W]`` with ``caption`` below."""
    return figure(image(image_png(x), f"sample {sample_id}"), caption)


def _scatters(result: ValidationResult) -> list[str]:
    parts = ["<h2>Each score against PSNR</h2>"]
    parts.append(
        '<p class="muted">One point per validated sample (red: riskiest, blue: safest); '
        "the red label marks the score's riskier end; dashed lines at "
        + " and ".join(f"{b:g} dB" for b in PSNR_BANDS_DB)
        + " (below: nothing recognisable; above: a close copy).</p>"
    )
    for attack in result.reconstructions:
        rows = {a.score: a for a in result.agreement if a.attack == attack and a.metric == "psnr"}
        charts = []
        for score in result.scores:
            direction = cast(Direction, result.directions[score])
            charts.append(
                scatter_svg(
                    result.scores[score].tolist(),
                    result.quality[attack]["psnr"].tolist(),
                    name=score,
                    title=f"{attack}: {score}, {_rho(rows.get(score))}",
                    riskier=direction,
                    labels=result.ids,
                    bands=PSNR_BANDS_DB,
                )
            )
        inner = "".join(charts)
        parts.append(f'<div class="charts" data-attack="{esc(attack)}">{inner}</div>')
    return parts


def render_validation_html(result: ValidationResult, n_show: int = 4) -> str:
    """The validation as one self-contained HTML page (see the module docs).

    Args:
        result: what :func:`leakaudit.validation.validate` returned.
        n_show: samples shown at each end of the ranking in the image grid.
    """
    n = len(result.indices)
    facts = (
        f"{n} samples attacked with {', '.join(result.reconstructions)} "
        f"(budget {result.config.get('budget')}), ordered by {result.risk_score} "
        f"({result.directions.get(result.risk_score, '').replace('_', ' ')})"
    )
    threat = result.config.get("batch_threat")
    if threat:  # the server saw batch gradients: say so, and how pairs were made
        facts += (
            f"; the server saw the gradient of each client batch of {threat['batch_size']} "
            f"(labels: {threat['labels']}; pairing: {threat['pairing']})"
        )
    body = [
        "<h1>leakaudit validate</h1>",
        f"<p>{esc(facts)}</p>",
        *_agreement(result),
        *_pairs(result, n_show),
        *_scatters(result),
    ]
    return page("leakaudit validate", body)
