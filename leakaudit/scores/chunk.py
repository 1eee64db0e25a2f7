"""Score one chunk of samples from its :class:`SampleOperators` (pure maths, no I/O)."""

from __future__ import annotations

import torch
from torch import Tensor

from leakaudit.jacobians.protocol import SampleOperators
from leakaudit.linalg.cg import conjugate_gradient
from leakaudit.linalg.lanczos import LanczosRun, Ritz, lanczos
from leakaudit.linalg.trace import mean_and_se, probe_vectors, quadrature
from leakaudit.scores import names as N
from leakaudit.scores.i2f import damped_gram_filter, i2f_from_moments
from leakaudit.scores.lavp import cosine_from_gram, estimated_residual, extreme, ritz_vector
from leakaudit.scores.options import ScoreOptions
from leakaudit.scores.plan import Plan

# Purposes that seed independent random streams per sample.
_START_L2, _START_COS, _PROBES = 1, 2, 3

Scores = dict[str, Tensor]
#: spectrum end ("l2_max", ...) → (value [B], winning sequence [B], Ritz column [B])
Ends = dict[str, tuple[Tensor, Tensor, Tensor]]


def score_chunk(
    ops: SampleOperators, indices: Tensor, options: ScoreOptions, plan: Plan
) -> tuple[Scores, Scores]:
    """Selected scores and diagnostics for one chunk.

    Args:
        ops: the chunk's Jacobian products; vectors in input space have length d.
        indices: ``[B]`` dataset positions (they seed each sample's random vectors).
        options: scoring options.
        plan: the work the selected scores need.

    Returns:
        ``(scores, diagnostics)``, name → ``[B]`` tensors on the chunk's device.
    """
    g = ops.grads
    B = g.shape[0]
    dtype, device = g.dtype, g.device
    gnorm = torch.linalg.vector_norm(g, dim=1)
    scores: Scores = {N.GRAD_NORM: gnorm}
    diag: Scores = {"converged": torch.ones(B, dtype=torch.bool, device=device)}
    if not plan.lanczos:
        return _select(scores, options), diag

    d = ops.dim
    slq_exact = plan.slq and options.n_probes >= d
    starts, n_l2 = _starts(indices, d, options, plan, dtype)
    starts = starts.to(device)
    l2, cos = slice(0, n_l2), slice(n_l2, starts.shape[1])

    w = ops.jt(g / gnorm.clamp_min(torch.finfo(dtype).tiny)[:, None]) if plan.cos else None

    def matvec(V: Tensor) -> Tensor:
        AV = ops.gram(V)
        if w is None:
            return AV
        return torch.cat([AV[:, l2], cosine_from_gram(AV[:, cos], V[:, cos], w, gnorm)], dim=1)

    tracker = _Convergence(options, plan, l2, cos, d)
    run = lanczos(
        matvec, starts, options.max_iter, converged=tracker, check_every=options.check_every
    )
    ritz = run.ritz()
    diag["lanczos_steps"] = run.length.max(-1).values

    ends = _extremes(ritz, plan, l2, cos)
    residuals = _true_residuals(ops, run, ritz, ends, w, gnorm)
    lam_max = ends["l2_max"][0] if plan.l2 else None
    for key, (value, _, _) in ends.items():
        op, end = key.split("_")
        top = ends[f"{op}_max"][0].abs().clamp_min(torch.finfo(dtype).tiny)
        diag[f"residual_{key}"] = residuals[key] / top
        ok = diag[f"residual_{key}"] <= 10 * options.tol
        if end == "min":  # PSD operator: 0 ≤ λ_min ≤ θ_min certifies the error bound
            ok = (diag[f"residual_{key}"] <= options.tol_min) | (value <= options.tol_min * top)
        name = N.lavp_name(op, end)
        diag[N.converged_key(name)] = ok
        scale = 2.0 if op == "l2" else 1.0
        scores[name] = scale * value
    if plan.cos:
        bad = gnorm <= torch.finfo(dtype).tiny
        for end in ("max", "min"):
            name = N.lavp_name("cos", end)
            if name in scores:
                scores[name] = scores[name].masked_fill(bad, float("nan"))
                diag[N.converged_key(name)] &= ~bad
    if N.LAVP_GM in options.scores:
        e = options.gm_end
        l2e, cose = N.lavp_name("l2", e), N.lavp_name("cos", e)
        scores[N.LAVP_GM] = (scores[l2e] * scores[cose]).clamp_min(0).sqrt()
        diag[N.converged_key(N.LAVP_GM)] = diag[N.converged_key(l2e)] & diag[N.converged_key(cose)]

    if lam_max is not None and (plan.trace or plan.slq):
        _i2f(ops, run, ritz, indices, options, plan, lam_max, d, slq_exact, l2, scores, diag)
        lam_ok = diag[N.converged_key(N.LAVP_L2_MAX)]
        for name in (N.I2F_LB, N.I2F):
            if name in scores:
                key = N.converged_key(name)
                diag[key] = lam_ok & diag.get(key, lam_ok)
    for name in scores:
        diag["converged"] &= diag.get(N.converged_key(name), diag["converged"])
    return _select(scores, options), diag


def _starts(
    indices: Tensor, d: int, options: ScoreOptions, plan: Plan, dtype: torch.dtype
) -> tuple[Tensor, int]:
    """Start vectors ``[B, m, d]``: L2 sequences first (the I²F probes when SLQ is needed),
    then one cosine sequence. (For d = 1, ``probe_vectors`` gives the basis vector.)"""

    def draw(n: int, purpose: int) -> Tensor:
        return probe_vectors(indices, d, n, seed=options.seed, purpose=purpose, dtype=dtype)

    parts = []
    if plan.l2:
        parts.append(draw(options.n_probes, _PROBES) if plan.slq else draw(1, _START_L2))
    n_l2 = parts[0].shape[1] if parts else 0
    if plan.cos:
        parts.append(draw(1, _START_COS))
    return torch.cat(parts, dim=1), n_l2


class _Convergence:
    """Per-sample early stop: a sample is done when every requested extreme (and its SLQ
    estimate) has settled. The test looks at that sample's own sequences only, so its
    result does not depend on the other samples of the chunk."""

    def __init__(self, options: ScoreOptions, plan: Plan, l2: slice, cos: slice, d: int) -> None:
        self.o, self.p, self.l2, self.cos, self.d = options, plan, l2, cos, d
        self.previous_quadrature: Tensor | None = None

    def __call__(self, run: LanczosRun) -> Tensor:
        ritz = run.ritz()
        ok = torch.ones(ritz.values.shape[0], dtype=torch.bool, device=ritz.values.device)
        for op, want_min, seqs in (
            ("l2", self.p.l2_min, self.l2),
            ("cos", self.p.cos_min, self.cos),
        ):
            if not (self.p.l2 if op == "l2" else self.p.cos):
                continue
            top, s, c = extreme(ritz, seqs, "max")
            top = top.abs().clamp_min(torch.finfo(top.dtype).tiny)
            ok &= estimated_residual(ritz, s, c) <= self.o.tol * top
            if want_min:
                low, s, c = extreme(ritz, seqs, "min")
                res = estimated_residual(ritz, s, c)
                ok &= (res <= 0.5 * self.o.tol_min * top) | (low <= 0.5 * self.o.tol_min * top)
        if self.p.slq:
            lam = extreme(ritz, self.l2, "max")[0]
            f = damped_gram_filter(self.o.damping * lam.clamp_min(torch.finfo(lam.dtype).tiny))
            q = quadrature(ritz.values[:, self.l2], ritz.first[:, self.l2], self.d, f).mean(-1)
            prev, self.previous_quadrature = self.previous_quadrature, q
            if prev is None:
                return torch.zeros_like(ok)
            ok &= (q - prev).abs() <= self.o.tol * 10 * q.abs()
        return ok


def _extremes(ritz: Ritz, plan: Plan, l2: slice, cos: slice) -> Ends:
    ends: Ends = {}
    if plan.l2:
        ends["l2_max"] = extreme(ritz, l2, "max")
        if plan.l2_min:
            ends["l2_min"] = extreme(ritz, l2, "min")
    if plan.cos:
        ends["cos_max"] = extreme(ritz, cos, "max")
        if plan.cos_min:
            ends["cos_min"] = extreme(ritz, cos, "min")
    return ends


def _true_residuals(
    ops: SampleOperators, run: LanczosRun, ritz: Ritz, ends: Ends, w: Tensor | None, gnorm: Tensor
) -> dict[str, Tensor]:
    """‖H y − θ y‖ for the chosen Ritz pairs, with one extra batched product.

    The Ritz vectors of every requested end, L2 and cosine, go through one ``gram`` call
    (``[B, r, d]``, r ≤ 4); the cosine ones then get their rank-one correction.
    """
    keys = list(ends)
    Y = torch.stack([ritz_vector(run, ritz, ends[k][1], ends[k][2]) for k in keys], dim=1)
    AY = ops.gram(Y)
    out = {}
    for i, key in enumerate(keys):
        y, hy = Y[:, i], AY[:, i]
        if key.startswith("cos"):
            assert w is not None
            hy = cosine_from_gram(hy[:, None], y[:, None], w, gnorm)[:, 0]
        out[key] = torch.linalg.vector_norm(hy - ends[key][0][:, None] * y, dim=1)
    return out


def _i2f(
    ops: SampleOperators,
    run: LanczosRun,
    ritz: Ritz,
    indices: Tensor,
    options: ScoreOptions,
    plan: Plan,
    lam_max: Tensor,
    d: int,
    slq_exact: bool,
    l2: slice,
    scores: Scores,
    diag: Scores,
) -> None:
    g = ops.grads
    tiny = torch.finfo(g.dtype).tiny
    lam = lam_max.clamp_min(tiny)
    eps = options.damping * lam
    defense = options.defense
    noise_var = defense.noise_variance(g)
    bias = defense.bias(g)
    jt_bias = ops.jt(bias) if bias is not None else None
    zero = torch.zeros_like(lam)

    if plan.slq:
        # The L2 sequences started at the probes: α₁·d = zᵀAz (Hutchinson) for free.
        tr_samples = d * run.alpha[:, l2, 0]
        tr, tr_se = mean_and_se(tr_samples, slq_exact)
    else:
        Z = probe_vectors(
            indices, d, options.n_probes, seed=options.seed, purpose=_PROBES, dtype=g.dtype
        ).to(g.device)
        tr, tr_se = mean_and_se(ops.jnorm2(Z), options.n_probes >= d)
    diag["trace_jtj"], diag["trace_jtj_se"] = tr, tr_se

    if plan.trace:
        c = jt_bias.pow(2).sum(1) if jt_bias is not None else zero
        num, num_se = i2f_from_moments(c, noise_var, tr, tr_se)
        scores[N.I2F_LB] = num / lam
        diag["i2f_lb_se"] = num_se / lam

    if plan.slq:
        f = damped_gram_filter(eps)
        q_samples = quadrature(ritz.values[:, l2], ritz.first[:, l2], d, f)
        q, q_se = mean_and_se(q_samples, slq_exact)
        c = zero
        if jt_bias is not None:
            sol = conjugate_gradient(
                lambda v: ops.gram(v[:, None])[:, 0] + eps[:, None] * v,
                jt_bias,
                tol=options.tol * 10,
                max_iter=20 * options.max_iter,
            )
            c = sol.solution.pow(2).sum(1)
            diag["cg_residual"] = sol.relative_residual
            diag[N.converged_key(N.I2F)] = sol.converged
        value, se = i2f_from_moments(c, noise_var, q, q_se)
        scores[N.I2F], diag["i2f_se"] = value, se
        diag["i2f_unit_sigma"] = q.clamp_min(0).sqrt()


def _select(scores: Scores, options: ScoreOptions) -> Scores:
    return {k: scores[k] for k in options.scores if k in scores}
