"""Score one chunk of samples from its :class:`SampleOperators` (pure maths, no I/O).

The chunk's matching Hessians and damped Gram are operators
(:mod:`leakaudit.scores.lavp`, :mod:`leakaudit.linalg.operators`); this module runs
Lanczos over them, reads the scores off the spectra and records per-sample diagnostics.
Small inputs (d ≤ ``dense_max_dim``) are scored exactly instead (:mod:`.dense`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from leakaudit.jacobians.protocol import SampleOperators
from leakaudit.linalg.lanczos import LanczosRun, Ritz, lanczos
from leakaudit.linalg.operators import (
    BatchedOperator,
    CGInverseOperator,
    DampedOperator,
    MatmatOperator,
)
from leakaudit.linalg.trace import mean_and_se, probe_vectors, quadrature
from leakaudit.scores import dense
from leakaudit.scores import names as N
from leakaudit.scores.attribution import block_local, block_parts, block_sq_norms
from leakaudit.scores.convergence import Convergence
from leakaudit.scores.i2f import (
    damped_gram_filter,
    epsilon,
    i2f_from_moments,
    require_lambda_max,
)
from leakaudit.scores.lavp import (
    CosineMatchingHessian,
    Ends,
    MatchingHessians,
    extreme,
    geometric_mean,
    no_cosine_without_gradient,
    record_end,
    true_residuals,
)
from leakaudit.scores.options import ScoreOptions
from leakaudit.scores.plan import Plan
from leakaudit.scores.traces import Traces, krylov_traces

# Purposes that seed independent random streams per sample.
_START_L2, _START_COS, _PROBES, _REMAINDER = 1, 2, 3, 4

Scores = dict[str, Tensor]


class Progress:
    """Reports a chunk's samples as they finish: each when its Lanczos run stops, the
    rest (runs without Lanczos) when the chunk is done.

    Args:
        callback: ``callback(n)`` with the number of samples finished since the last call.
        batch: the chunk's size.
    """

    def __init__(self, callback: Callable[[int], None] | None, batch: int) -> None:
        self.callback, self.left = callback, batch
        self.reported: Tensor | None = None

    def finished(self, done: Tensor) -> None:
        """Report the samples of ``done`` (``[B]`` bool) not reported yet."""
        if self.callback is None:
            return
        new = done if self.reported is None else done & ~self.reported
        self.reported = new if self.reported is None else self.reported | new
        count = int(new.sum())
        if count:
            self.left -= count
            self.callback(count)

    def close(self) -> None:
        """Report every sample not reported yet."""
        if self.callback is not None and self.left:
            self.callback(self.left)
        self.left = 0


@dataclass
class _Chunk:
    """One chunk's inputs and its results so far (scores and diagnostics, name → ``[B]``)."""

    ops: SampleOperators
    indices: Tensor
    options: ScoreOptions
    plan: Plan
    gram: BatchedOperator
    gnorm: Tensor
    scores: Scores
    diag: Scores
    progress: Progress = field(default_factory=lambda: Progress(None, 0))
    width: int | None = None

    @classmethod
    def start(
        cls, ops: SampleOperators, indices: Tensor, options: ScoreOptions, plan: Plan
    ) -> _Chunk:
        g = ops.grads
        gram = MatmatOperator(ops.gram, g.shape[0], ops.dim, lambda i: ops.restrict(i).gram)
        gnorm = torch.linalg.vector_norm(g, dim=1)
        diag = {"converged": torch.ones(g.shape[0], dtype=torch.bool, device=g.device)}
        return cls(ops, indices, options, plan, gram, gnorm, {N.GRAD_NORM: gnorm}, diag)

    @property
    def tiny(self) -> float:
        """The smallest positive normal number of the chunk's dtype."""
        return torch.finfo(self.ops.grads.dtype).tiny


@dataclass
class _Spectrum:
    """The chunk's Lanczos run: L2 sequences in ``l2``, cosine ones in ``cos``."""

    hessians: MatchingHessians
    run: LanczosRun
    ritz: Ritz
    l2: slice
    cos: slice
    ends: Ends


def score_chunk(
    ops: SampleOperators,
    indices: Tensor,
    options: ScoreOptions,
    plan: Plan,
    progress: Callable[[int], None] | None = None,
    width: int | None = None,
) -> tuple[Scores, Scores]:
    """Selected scores and diagnostics for one chunk.

    Args:
        ops: the chunk's Jacobian products; vectors in input space have length d.
        indices: ``[B]`` dataset positions (they seed each sample's random vectors).
        options: scoring options.
        plan: the work the selected scores need.
        progress: ``progress(n)`` as samples finish (see :class:`Progress`); the calls
            add up to B by the time this returns.
        width: samples whose Lanczos runs go on at once (default: all); a sample that
            stops hands its slot to the next (:func:`~leakaudit.linalg.lanczos.lanczos`).

    Returns:
        ``(scores, diagnostics)``, name → ``[B]`` tensors on the chunk's device.
    """
    chunk = _Chunk.start(ops, indices, options, plan)
    chunk.progress, chunk.width = Progress(progress, len(indices)), width
    if dense.applies(options, plan, ops.dim):
        chunk.scores, chunk.diag = dense.dense_scores(ops, options, plan)
    elif plan.lanczos:
        spectrum = _spectrum(chunk)
        _lavp(chunk, spectrum)
        if plan.l2 and (plan.trace or plan.slq):
            _i2f(chunk, spectrum)
    for name in chunk.scores:
        key = N.converged_key(name)
        chunk.diag["converged"] &= chunk.diag.get(key, chunk.diag["converged"])
    chunk.progress.close()
    return _select(chunk.scores, options), chunk.diag


def _spectrum(chunk: _Chunk) -> _Spectrum:
    """Run Lanczos on the matching Hessians; every sample stops on its own convergence."""
    o, p, g = chunk.options, chunk.plan, chunk.ops.grads
    d = chunk.ops.dim
    # Jᵀu, u = g*/‖g*‖: the cosine operator's rank-one part, and the direction the L2
    # sequence starts near when only its top end is needed (Rayleigh quotient
    # ‖JJᵀu‖²/‖Jᵀu‖²: large; a start near the top slows the bottom end down).
    top_only = p.l2 and not (p.slq or p.l2_min)
    jtu = None
    if p.cos or top_only:
        jtu = chunk.ops.jt(g / chunk.gnorm.clamp_min(chunk.tiny)[:, None])
    starts, n_l2 = _starts(chunk.indices, d, o, p, g.dtype, jtu if top_only else None)
    l2, cos = slice(0, n_l2), slice(n_l2, starts.shape[1])
    cosine = None
    if p.cos:
        assert jtu is not None
        cosine = CosineMatchingHessian(chunk.gram, jtu, chunk.gnorm)
    hessians = MatchingHessians(chunk.gram, cosine, n_l2)
    run = lanczos(
        hessians,
        starts.to(g.device),
        o.max_iter,
        converged=Convergence(o, p, l2, cos, d),
        check_every=o.check_every,
        width=chunk.width,
        on_done=chunk.progress.finished,
    )
    ritz = run.ritz()
    chunk.diag["lanczos_steps"] = run.length.max(-1).values
    chunk.diag["lanczos_vectors"] = run.length.sum(-1)
    return _Spectrum(hessians, run, ritz, l2, cos, _extremes(ritz, p, l2, cos))


def _starts(
    indices: Tensor,
    d: int,
    options: ScoreOptions,
    plan: Plan,
    dtype: torch.dtype,
    toward: Tensor | None,
) -> tuple[Tensor, int]:
    """Start vectors ``[B, m, d]``: L2 sequences first (the I²F probes when SLQ is needed,
    else one sequence: a random unit vector, plus ``toward`` ``[B, d]`` (Jᵀu, normalised)
    when given, the random tenth keeping the start nonzero and in general position), then
    one cosine sequence. (For d = 1, ``probe_vectors`` gives the basis vector.)"""

    def draw(n: int, purpose: int) -> Tensor:
        return probe_vectors(indices, d, n, seed=options.seed, purpose=purpose, dtype=dtype)

    parts = []
    if plan.l2:
        if plan.slq:
            Z = draw(options.n_probes, _PROBES)
            exact = options.n_probes >= d
            parts.append(block_local(Z, options.blocks) if options.blocks > 1 and not exact else Z)
        else:
            z = draw(1, _START_L2) / d**0.5
            if toward is not None:
                t = toward.detach().to("cpu", dtype)[:, None]
                z = (
                    t
                    / torch.linalg.vector_norm(t, dim=-1, keepdim=True).clamp_min(
                        torch.finfo(dtype).tiny
                    )
                    + 0.1 * z
                )
            parts.append(z)
    n_l2 = parts[0].shape[1] if parts else 0
    if plan.cos:
        parts.append(draw(1, _START_COS))
    return torch.cat(parts, dim=1), n_l2


def _extremes(ritz: Ritz, plan: Plan, l2: slice, cos: slice) -> Ends:
    ends: Ends = {}
    if plan.l2:
        ends["l2", "max"] = extreme(ritz, l2, "max")
        if plan.l2_min:
            ends["l2", "min"] = extreme(ritz, l2, "min")
    if plan.cos:
        ends["cos", "max"] = extreme(ritz, cos, "max")
        if plan.cos_min:
            ends["cos", "min"] = extreme(ritz, cos, "min")
    return ends


def _lavp(chunk: _Chunk, spectrum: _Spectrum) -> None:
    """LAVP scores from the extreme Ritz values, each certified by its true residual."""
    o, diag = chunk.options, chunk.diag
    residuals = true_residuals(spectrum.hessians, spectrum.run, spectrum.ritz, spectrum.ends)
    for (op, end), (value, _, _) in spectrum.ends.items():
        top = spectrum.ends[op, "max"][0].abs().clamp_min(chunk.tiny)
        residual = residuals[op, end] / top
        record_end(chunk.scores, diag, o, op, end, value, residual, top)
    if chunk.plan.cos:
        no_cosine_without_gradient(chunk.scores, diag, chunk.gnorm <= chunk.tiny)
    geometric_mean(chunk.scores, diag, o)


def _i2f(chunk: _Chunk, spectrum: _Spectrum) -> None:
    """I²F and its lower bound under the chunk's defence (Zhang et al. 2023)."""
    g, o, diag = chunk.ops.grads, chunk.options, chunk.diag
    lam = spectrum.ends["l2", "max"][0].clamp_min(chunk.tiny)
    noise_var = o.defense.noise_variance(g)
    bias = o.defense.bias(g)
    jt_bias = chunk.ops.jt(bias) if bias is not None else None
    traces = _trace(chunk, spectrum)
    tr, tr_se = traces.trace, traces.trace_se
    diag["trace_jtj"], diag["trace_jtj_se"] = tr, tr_se
    if chunk.plan.trace:
        c = jt_bias.pow(2).sum(1) if jt_bias is not None else torch.zeros_like(lam)
        num, num_se = i2f_from_moments(c, noise_var, tr, tr_se)
        chunk.scores[N.I2F_LB] = num / lam
        diag["i2f_lb_se"] = num_se / lam
    if chunk.plan.slq:
        _i2f_slq(chunk, spectrum, traces, epsilon(o, lam), noise_var, jt_bias)
    require_lambda_max(chunk.scores, diag)


def _trace(chunk: _Chunk, spectrum: _Spectrum) -> Traces:
    """tr JᵀJ and its standard error: exact where the L2 Krylov spaces span the input
    space, else deflated by the λ_max sequence's basis (:mod:`leakaudit.scores.traces`)."""
    top = spectrum.ends["l2", "max"][1]
    return krylov_traces(
        chunk.ops, chunk.indices, chunk.options, spectrum.run, spectrum.l2, top, _REMAINDER
    )


def _i2f_slq(
    chunk: _Chunk,
    spectrum: _Spectrum,
    traces: Traces,
    eps: Tensor,
    noise_var: Tensor,
    jt_bias: Tensor | None,
) -> None:
    """I²F: the noise term tr f(JᵀJ), f(λ) = λ/(λ+ε)², from the eigenvalues where they
    are known (``traces.exact``) and by SLQ elsewhere; the bias term by CG on JᵀJ + εI."""
    o, diag, ritz, l2 = chunk.options, chunk.diag, spectrum.ritz, spectrum.l2
    d = chunk.ops.dim
    f = damped_gram_filter(eps)
    q_samples = quadrature(ritz.values[:, l2], ritz.first[:, l2], d, f)
    q, q_se = mean_and_se(q_samples, o.n_probes >= d)
    exact_q = f(traces.values.nan_to_num(0)[:, None]).sum((-1, -2))
    q = torch.where(traces.exact, exact_q, q)
    q_se = torch.where(traces.exact, torch.zeros_like(q_se), q_se)
    c = torch.zeros_like(eps)
    solution = None
    if jt_bias is not None:
        damped = DampedOperator(chunk.gram, eps)
        sol = CGInverseOperator(damped, tol=o.tol * 10, max_iter=20 * o.max_iter).solve(jt_bias)
        solution = sol.solution
        c = solution.pow(2).sum(1)
        diag["cg_residual"] = sol.relative_residual
        diag[N.converged_key(N.I2F)] = sol.converged
    value, se = i2f_from_moments(c, noise_var, q, q_se)
    chunk.scores[N.I2F], diag["i2f_se"] = value, se
    diag["i2f_unit_sigma"] = q.clamp_min(0).sqrt()
    if o.blocks > 1:
        _i2f_blocks(chunk, spectrum, q_samples, q, noise_var, solution)


def _i2f_blocks(
    chunk: _Chunk,
    spectrum: _Spectrum,
    q_samples: Tensor,
    q_total: Tensor,
    noise_var: Tensor,
    bias_solution: Tensor | None,
) -> None:
    """Each block's part of the I²F error, ``[B, blocks]`` (:mod:`.attribution`): the
    block-local SLQ shares of the noise term, scaled to sum to ``q_total`` (the batch's
    own noise term, exact where the eigenvalues are known), so the parts add up to I²F."""
    blocks = chunk.options.blocks
    q = block_parts(q_samples, spectrum.run.basis[:, spectrum.l2, 0], blocks)
    total = q.sum(1, keepdim=True)
    q = torch.where(total > 0, q * (q_total[:, None] / total.clamp_min(1e-300)), q)
    c = block_sq_norms(bias_solution, blocks) if bias_solution is not None else 0 * q
    chunk.diag["i2f_blocks"] = (c + noise_var[:, None] * q).clamp_min(0).sqrt()
    chunk.diag["i2f_blocks_unit_sigma"] = q.clamp_min(0).sqrt()


def _select(scores: Scores, options: ScoreOptions) -> Scores:
    return {k: scores[k] for k in options.scores if k in scores}
