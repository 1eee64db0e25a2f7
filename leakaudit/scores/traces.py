"""The traces I²F needs, tr A and tr f(A) with A = JᵀJ, from the L2 Lanczos run that
already found λ_max (Zhang et al. 2023 for the formulas; :mod:`leakaudit.scores.i2f`).

Two estimators, chosen per sample:

* **exact** — when the sample's L2 sequences hold nearly d Lanczos vectors (small
  inputs), Rayleigh–Ritz on the union of their Krylov spaces gives A's eigenvalues, so
  tr A = Σ θ and tr f(A) = Σ f(θ) with a standard error of zero; A on the union comes
  from the Lanczos recurrences, and the directions the union leaves unspanned, when
  there are few (:func:`_fill_budget`), cost one Gram product each
  (:func:`~leakaudit.linalg.trace.union_rayleigh_ritz`);
* **deflated** — otherwise tr A = tr(Qᵀ A Q) + tr(P A P), with Q the basis of the union
  of the Krylov spaces where A is known on it, else the Krylov basis of the sequence that
  found λ_max (then Qᵀ A Q = T, whose trace is known), and P = I − QQᵀ; the
  remainder is Hutchinson's estimate over fresh probes projected by P (one J·v each), as
  in Hutch++ (Meyer et al. 2021) with the Lanczos basis as the sketch. tr f(A) keeps
  stochastic Lanczos quadrature over the probes the sequences started from.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from leakaudit.jacobians.protocol import SampleOperators
from leakaudit.linalg.lanczos import LanczosRun
from leakaudit.linalg.trace import (
    mean_and_se,
    probe_vectors,
    project_out,
    ritz_values,
    union_rayleigh_ritz,
)
from leakaudit.scores.options import ScoreOptions

#: Relative singular value below which a direction of the stacked Krylov vectors counts as
#: already spanned. Products are recovered through 1/s, so this bounds the amplification
#: of rounding in A q (≈ 1e3·eps·λ_max in float32).
RANK_TOL = {torch.float32: 1e-3, torch.float64: 1e-6}


@dataclass
class Traces:
    """tr A per sample and what the I²F quadrature can reuse.

    Attributes:
        trace: ``[B]`` tr A; ``trace_se``: its standard error (0 where exact).
        exact: ``[B]`` bool, True where the union of the Krylov spaces is the whole space.
        values: ``[B, k]`` A's eigenvalues (zero-padded) where ``exact``; NaN elsewhere.
    """

    trace: Tensor
    trace_se: Tensor
    exact: Tensor
    values: Tensor


def krylov_traces(
    ops: SampleOperators,
    indices: Tensor,
    options: ScoreOptions,
    run: LanczosRun,
    l2: slice,
    top: Tensor,
    purpose: int,
) -> Traces:
    """tr A for a chunk, exact or deflated per sample (see the module docstring).

    Args:
        ops: the chunk's Jacobian products (d = ``ops.dim``).
        indices: ``[B]`` dataset positions (they seed the remainder probes).
        options: ``n_probes`` and ``seed``.
        run: the Lanczos run on A; ``l2``: its sequences on A.
        top: ``[B]`` the sequence (a column of ``run``) that found λ_max.
        purpose: the random stream of the remainder probes (independent of the starts).
    """
    B, dtype, device = run.alpha.shape[0], run.alpha.dtype, run.alpha.device
    exact = torch.zeros(B, dtype=torch.bool, device=device)
    values = torch.full((B, 1), float("nan"), dtype=dtype, device=device)
    vectors = run.length[:, l2].sum(-1)
    spans = vectors + _fill_budget(options, vectors) >= ops.dim
    partial: list[tuple[Tensor, Tensor, Tensor]] = []  # (samples, basis, tr of A on it)
    if bool(spans.any()):
        idx = spans.nonzero()[:, 0]
        theta, ok, basis, known = _eigenvalues(ops, options, run, l2, idx)
        values = torch.full((B, theta.shape[1]), float("nan"), dtype=dtype, device=device)
        values[idx], exact[idx] = theta.to(dtype), ok
        partial.append((idx[~ok], basis[~ok], known[~ok]))
    trace = torch.where(exact, values.sum(-1), torch.zeros(B, dtype=dtype, device=device))
    se = torch.zeros_like(trace)
    rest = (~exact & ~spans).nonzero()[:, 0]
    seq = top[rest]
    steps = torch.arange(run.steps, device=device)
    valid = steps < run.length[rest, seq][:, None]
    partial.append(
        (rest, run.basis[rest, seq], torch.where(valid, run.alpha[rest, seq], 0).sum(-1))
    )
    for rows, basis, known in partial:
        if rows.numel():
            trace[rows], se[rows] = _deflated(ops, indices, options, rows, basis, purpose)
            trace[rows] += known
    return Traces(trace, se, exact, values)


def _fill_budget(options: ScoreOptions, vectors: Tensor) -> Tensor:
    """Directions the exact estimate may compute directly, ``[B]``: as many as the probes
    of the deflated estimate (``n_probes``), or half the Lanczos vectors (at most +50 % of
    the run's Gram products), whichever is more."""
    return torch.clamp(vectors // 2, min=options.n_probes)


def _eigenvalues(
    ops: SampleOperators, options: ScoreOptions, run: LanczosRun, l2: slice, idx: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For the samples ``idx``: A's eigenvalues ``[b, d]``, whether they are exact ``[b]``,
    and, for deflating the others, the basis of the directions A is known on (zero rows
    elsewhere) ``[b, d, d]`` and A's trace on them ``[b]``.

    Directions the Krylov spaces leave (numerically) unspanned get their products
    computed, one Gram product each, when there are few enough (:func:`_fill_budget`).
    """
    dtype = run.alpha.dtype
    basis, prods = run.basis[idx, l2].flatten(1, 2), run.products(l2)[idx].flatten(1, 2)
    Q, AQ, known = union_rayleigh_ritz(basis, prods, RANK_TOL[dtype])
    missing = (~known).sum(-1)
    vectors = run.length[idx, l2].sum(-1)
    fill = (missing > 0) & (missing <= _fill_budget(options, vectors))
    if bool(fill.any()):
        sub = fill.nonzero()[:, 0]
        k = int(missing[sub].max())  # unknown directions come last (S descends)
        AQ[sub, -k:] = ops.restrict(idx[sub]).gram(Q[sub, -k:].to(dtype)).double()
        known[sub] = True
    on_known = torch.where(known, (Q * AQ).sum(-1), 0).sum(-1).to(dtype)
    Qk = torch.where(known[..., None], Q, 0).to(dtype)
    return ritz_values(Q, AQ), known.all(-1), Qk, on_known


def _deflated(
    ops: SampleOperators,
    indices: Tensor,
    options: ScoreOptions,
    rows: Tensor,
    basis: Tensor,
    purpose: int,
) -> tuple[Tensor, Tensor]:
    """Hutchinson's tr(PAP) and its standard error for the samples ``rows``, P = I − QᵀQ
    with ``basis`` Q ``[b, k, d]`` (orthonormal rows, or zero rows)."""
    d = ops.dim
    Z = probe_vectors(
        indices[rows.cpu()],
        d,
        options.n_probes,
        seed=options.seed,
        purpose=purpose,
        dtype=basis.dtype,
    ).to(basis.device)
    samples = ops.restrict(rows).jnorm2(project_out(Z, basis))
    return mean_and_se(samples, options.n_probes >= d)
