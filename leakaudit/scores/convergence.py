"""When a chunk's Lanczos sequences may stop, decided per sample and operator.

A sample's sequences on one operator (L2 or cosine) are done when every extreme Ritz value
its scores need has a small estimated residual (the smallest end may instead certify
itself by being tiny) and, for the L2 ones when I²F needs SLQ, the quadrature estimate has
stopped moving between checks. The test is stateless:
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

#: Steps between the two SLQ estimates compared (at least; ``check_every`` when larger):
#: the I²F quadrature is settled when it moved by less than 10·tol over this many steps.
SLQ_LAG = 8


class Convergence:
    """Per-sample, per-operator early stop: a sample's L2 sequences are done when the L2
    extremes (and the SLQ estimate) have settled, its cosine sequence when the cosine
    extremes have; the sample is done with both. The test looks at that sample's own
    sequences only, so its result does not depend on the other samples of the chunk."""

    def __init__(self, options: ScoreOptions, plan: Plan, l2: slice, cos: slice, d: int) -> None:
        """Args:
        options: the tolerances (``tol``, ``tol_min``) and the I²F damping.
        plan: which ends and estimates the selected scores need.
        l2: the L2 sequences among the run's columns; ``cos``: the cosine ones.
        d: the input dimension (SLQ's scale).
        """
        self.o, self.p, self.l2, self.cos, self.d = options, plan, l2, cos, d

    def __call__(self, run: LanczosRun) -> Tensor:
        """``[B, m]``: True for the sequences that may stop — the L2 ones when the L2 ends
        (and the SLQ estimate) have settled, the cosine one when the cosine ends have."""
        ritz = run.ritz()
        done = torch.zeros(run.alpha.shape[:2], dtype=torch.bool, device=ritz.values.device)
        if self.p.l2:
            ok = self._ends(ritz, self.l2, self.p.l2_min)
            if self.p.slq:
                q = self._quadrature(ritz)
                # The estimate SLQ_LAG steps earlier, read off the same coefficients.
                steps = run.length[:, self.l2].max(-1).values - max(self.o.check_every, SLQ_LAG)
                prev = self._quadrature(run.truncated(steps).ritz())
                ok &= (steps > 0) & ((q - prev).abs() <= self.o.tol * 10 * q.abs())
            done[:, self.l2] = ok[:, None]
        if self.p.cos:
            done[:, self.cos] = self._ends(ritz, self.cos, self.p.cos_min)[:, None]
        return done

    def _ends(self, ritz: Ritz, seqs: slice, want_min: bool) -> Tensor:
        """``[B]``: the largest (and, when wanted, smallest) end of ``seqs`` has settled."""
        top, s, c = extreme(ritz, seqs, "max")
        top = top.abs().clamp_min(torch.finfo(top.dtype).tiny)
        ok = estimated_residual(ritz, s, c) <= self.o.tol * top
        if want_min:
            low, s, c = extreme(ritz, seqs, "min")
            res = estimated_residual(ritz, s, c)
            ok &= (res <= 0.5 * self.o.tol_min * top) | (low <= 0.5 * self.o.tol_min * top)
        return ok

    def _quadrature(self, ritz: Ritz) -> Tensor:
        """The SLQ estimate of tr f(A) (mean over the L2 probes), ``[B]``."""
        lam = extreme(ritz, self.l2, "max")[0]
        f = damped_gram_filter(epsilon(self.o, lam))
        return quadrature(ritz.values[:, self.l2], ritz.first[:, self.l2], self.d, f).mean(-1)
