"""When a chunk's Lanczos run may stop, decided per sample.

A sample is done when every extreme Ritz value its scores need has a small estimated
residual (the smallest end may instead certify itself by being tiny) and, when I²F needs
SLQ, its quadrature estimate has stopped moving between checks. The test is stateless:
it reads a sample's own Lanczos coefficients only, so it can be asked about any samples,
each at its own step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from leakaudit.linalg.lanczos import LanczosRun, Ritz
from leakaudit.linalg.trace import quadrature
from leakaudit.scores.i2f import damped_gram_filter, epsilon
from leakaudit.scores.lavp import estimated_residual, extreme
from leakaudit.scores.options import ScoreOptions
from leakaudit.scores.plan import Plan


class Convergence:
    """Per-sample early stop: a sample is done when every requested extreme (and its SLQ
    estimate) has settled. The test looks at that sample's own sequences only, so its
    result does not depend on the other samples of the chunk."""

    def __init__(self, options: ScoreOptions, plan: Plan, l2: slice, cos: slice, d: int) -> None:
        """Args:
        options: the tolerances (``tol``, ``tol_min``) and the I²F damping.
        plan: which ends and estimates the selected scores need.
        l2: the L2 sequences among the run's columns; ``cos``: the cosine ones.
        d: the input dimension (SLQ's scale).
        """
        self.o, self.p, self.l2, self.cos, self.d = options, plan, l2, cos, d

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
            q = self._quadrature(ritz)
            # The estimate one check earlier, read off the same coefficients.
            steps = run.length.max(-1).values - self.o.check_every
            prev = self._quadrature(run.truncated(steps).ritz())
            ok &= (steps > 0) & ((q - prev).abs() <= self.o.tol * 10 * q.abs())
        return ok

    def _quadrature(self, ritz: Ritz) -> Tensor:
        """The SLQ estimate of tr f(A) (mean over the L2 probes), ``[B]``."""
        lam = extreme(ritz, self.l2, "max")[0]
        f = damped_gram_filter(epsilon(self.o, lam))
        return quadrature(ritz.values[:, self.l2], ritz.first[:, self.l2], self.d, f).mean(-1)
